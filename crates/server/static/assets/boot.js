// Runs first, before the page renders: a sign-in link's `?token=…` leaves the address bar (and the
// history entry) at once. The token is handed to app.js in memory only, which exchanges it for the
// session cookie and forgets it.
(function () {
  'use strict';
  var params = new URLSearchParams(location.search);
  var token = params.get('token');
  if (location.search) history.replaceState(null, '', location.pathname + location.hash);
  if (token) window.__crewgateLinkToken = token;
})();
