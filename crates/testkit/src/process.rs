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

/// Errors of a fake process's `main`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The common life of a `fake-*` process: serves `control` on its own loopback port, prints one
/// JSON line (`announce` plus `"controlUrl"`) on stdout for the parent to read, then runs until
/// [`parent_gone`] or until the control server fails.
pub async fn serve_control(
    control: axum::Router,
    mut announce: serde_json::Map<String, serde_json::Value>,
) -> Result<(), BoxError> {
    use std::io::Write as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    announce.insert("controlUrl".into(), format!("http://{}", listener.local_addr()?).into());
    let server = tokio::spawn(async move { axum::serve(listener, control).await });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::Value::Object(announce))?;
    out.flush()?;
    drop(out);
    tokio::select! {
        () = parent_gone() => {},
        res = server => res??,
    }
    Ok(())
}
