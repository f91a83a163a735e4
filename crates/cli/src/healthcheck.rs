//! `crewgate healthcheck`: exit 0 when the local gateway answers `GET /ready` with 200, else 1.
//! Made for container `HEALTHCHECK`s (the runtime image has no curl).

use clap::Args;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// The gateway's listen address (its --bind); 0.0.0.0 and [::] are probed on loopback.
    /// Default 127.0.0.1:18789.
    #[arg(long, env = "CREWGATE_BIND")]
    pub bind: Option<SocketAddr>,
    /// Probe this URL instead, e.g. http://127.0.0.1:18789/ready.
    #[arg(long)]
    pub url: Option<String>,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub timeout_ms: u64,
}

pub async fn run(args: HealthcheckArgs) -> ExitCode {
    let url = args.url.clone().unwrap_or_else(|| ready_url(args.bind));
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_millis(args.timeout_ms.max(1)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("not ready: cannot build an HTTP client: {:#}", anyhow::Error::from(e));
            return ExitCode::FAILURE;
        }
    };
    match client.get(&url).send().await {
        Ok(r) if r.status() == reqwest::StatusCode::OK => {
            println!("ready: {url}");
            ExitCode::SUCCESS
        }
        Ok(r) => {
            eprintln!("not ready: {url} answered HTTP {}", r.status().as_u16());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("not ready: {:#}", anyhow::Error::from(e));
            ExitCode::FAILURE
        }
    }
}

/// `http://<loopback or bind ip>:<port>/ready`.
fn ready_url(bind: Option<SocketAddr>) -> String {
    let addr = bind
        .unwrap_or_else(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), crewgate_config::DEFAULT_PORT));
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/ready", SocketAddr::new(ip, addr.port()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn probes_loopback_for_wildcard_binds() {
        assert_eq!(ready_url(None), "http://127.0.0.1:18789/ready");
        assert_eq!(ready_url(Some("0.0.0.0:9000".parse().unwrap())), "http://127.0.0.1:9000/ready");
        assert_eq!(ready_url(Some("[::]:9000".parse().unwrap())), "http://[::1]:9000/ready");
        assert_eq!(ready_url(Some("10.0.0.5:18789".parse().unwrap())), "http://10.0.0.5:18789/ready");
    }
}
