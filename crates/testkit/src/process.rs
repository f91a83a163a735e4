//! Lifetime of the fakes run as child processes (the `fake-*` binaries used by the browser tests).

use tokio::io::AsyncReadExt as _;

/// Resolves when the parent is gone or asks us to stop: stdin reaches end of file (the parent
/// closed it or exited), SIGTERM, or Ctrl-C.
pub async fn parent_gone() {
    tokio::select! {
        () = stdin_closed() => {},
        () = terminated() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    loop {
        match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    }
    #[cfg(not(unix))]
    std::future::pending::<()>().await;
}
