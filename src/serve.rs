//! `dialplane serve`: the call-control server — SIP (UDP + TCP, TLS when configured), the
//! in-process media plane, the B2BUA running each call's control app, and HTTP (REST call
//! control and `/metrics`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use media::driver::Media;
use metrics_exporter_prometheus::PrometheusHandle;
use signaling::app::StaticApp;
use signaling::b2bua::{self, AppSource, Services};
use signaling::config::{self, Config, ServeOverrides};
use signaling::rest::{CallRegistry, RestApi};
use signaling::transport::{TransportConfig, Transports};
use signaling::verbs::Hook;
use signaling::webhook::{WebhookClient, WebhookOptions};

use crate::media_cmd::{RelayFlags, media_config};

/// Flags a test harness needs; each overrides its key in the config file
#[derive(Args, Debug)]
pub struct ServeFlags {
    /// SIP over UDP and TCP on this address (default 127.0.0.1:5060)
    #[arg(long, value_name = "ADDR")]
    sip: Option<SocketAddr>,
    #[command(flatten)]
    relay: RelayFlags,
    /// REST and /metrics on this address (default 127.0.0.1:3000)
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// Static verbs for every call (a jambonz app as JSON)
    #[arg(long, value_name = "FILE.json")]
    app: Option<PathBuf>,
    /// The call webhook (wins over --app)
    #[arg(long, value_name = "URL")]
    app_url: Option<String>,
    /// Sign every webhook with this secret (Jambonz-Signature)
    #[arg(long, value_name = "SECRET")]
    webhook_secret: Option<String>,
    /// Bearer token REST requests must carry
    #[arg(long, value_name = "TOKEN")]
    api_token: Option<String>,
    /// Where each leg's call-status changes are POSTed
    #[arg(long, value_name = "URL")]
    status_hook: Option<String>,
    /// The address advertised in SIP and SDP (behind NAT)
    #[arg(long, value_name = "IP")]
    external_ip: Option<IpAddr>,
    /// Resolve SIP host names with this name server (IP:PORT) instead of `[dns] nameservers`
    #[arg(long, value_name = "ADDR")]
    dns: Option<SocketAddr>,
    /// On SIGTERM, calls up may go on this long while new ones get 503 (a second signal, or
    /// SIGINT, stops at once)
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub drain_timeout: u64,
}

impl ServeFlags {
    /// Writes the flags over the config file's values.
    pub fn apply(self, c: &mut Config) {
        if let Some(a) = self.sip {
            c.sip.listen = vec![format!("udp:{a}"), format!("tcp:{a}")];
        }
        if let Some(a) = self.dns {
            c.dns.nameservers = vec![a];
        }
        if self.external_ip.is_some() {
            c.sip.external_ip = self.external_ip;
        }
        self.relay.apply(&mut c.media);
        c.apply_overrides(ServeOverrides {
            http: self.http,
            api_token: self.api_token,
            app_file: self.app,
            app_url: self.app_url,
            webhook_secret: self.webhook_secret,
            status_hook: self.status_hook,
        });
    }
}

/// Runs the server until SIGINT or SIGTERM.
pub fn run(config: Config, prometheus: PrometheusHandle, drain: Duration) -> anyhow::Result<()> {
    let app = match config.app.source()? {
        config::AppSource::Url(url) => AppSource::Webhook(Hook::post(url.to_string())),
        config::AppSource::File(path) => AppSource::Static(
            // The error names the file and the cause already: no chain to print.
            StaticApp::load(path, config.app.hook_base_url.as_deref())
                .map_err(|e| anyhow::anyhow!("loading the app: {e}"))?,
        ),
    };
    // One thread for SIP, the B2BUA, webhooks and REST: they hand messages to each other all
    // the time, and across worker threads every hand-off was a wake-up and a context switch
    // (most of the CPU per call in perf). The media shards have threads of their own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(serve(Arc::new(config), app, prometheus, drain))
}

async fn serve(
    config: Arc<Config>,
    app: AppSource,
    prometheus: PrometheusHandle,
    drain: Duration,
) -> anyhow::Result<()> {
    let (media, media_events) =
        Media::start(media_config(&config.media)).context("starting the media plane")?;
    let media = Arc::new(media);
    let mut transport = TransportConfig::from_config(&config.sip);
    if let Some(tls) = &config.sip.tls {
        transport.tls_server = Some(
            signaling::transport::load_tls_server(&tls.cert, &tls.key)
                .context("loading the SIP TLS certificate")?,
        );
    }
    let (transports, inbound) = Transports::bind(transport)
        .await
        .context("binding the SIP listeners")?;
    let registry = Arc::new(CallRegistry::default());
    let http = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding the HTTP listener {}", config.http.listen))?;
    let http_addr = http.local_addr()?;
    let webhooks = WebhookClient::new(WebhookOptions {
        secret: config.app.webhook_secret.clone(),
        ..WebhookOptions::default()
    })?;
    let sip_addrs: Vec<String> = transports
        .local_addrs()
        .iter()
        .map(|(t, a)| format!("{t}:{a}"))
        .collect();
    let sip_addr = transports
        .local_addrs()
        .first()
        .map(|(_, a)| a.to_string())
        .unwrap_or_default();
    let services = Services {
        media_ip: config.sip.external_ip.unwrap_or(config.media.interface),
        config: config.clone(),
        app,
        media: media.clone(),
        registry: registry.clone(),
        webhooks,
        seed: rand_seed(),
    };
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(None);
    let mut b2bua = b2bua::start(transports, inbound, media_events, services, drain_rx)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut stop_http = stop_rx.clone();
    let rest = RestApi::new(registry, prometheus, &config.http);
    let http_task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop_http.wait_for(|s| *s).await;
        };
        rest.serve(http, shutdown).await
    });
    tracing::info!(sip = ?sip_addrs, http = %http_addr, media = %config.media.interface,
        ports = %format_args!("{}-{}", config.media.port_min, config.media.port_max),
        "dialplane serve: running");
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready sip={sip_addr} http={http_addr}")?;
        out.flush()?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {
            // Calls up may finish; a second signal stops at once.
            tracing::info!(drain_timeout_s = drain.as_secs(), "SIGTERM: draining");
            let _ = drain_tx.send(Some(std::time::Instant::now() + drain));
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
                r = &mut b2bua => { r.context("the B2BUA task")?; }
            }
        }
        r = &mut b2bua => { r.context("the B2BUA task")?; }
    }
    tracing::info!("dialplane serve: stopping");
    let _ = stop_tx.send(true);
    let _ = http_task.await;
    drop(stop_rx);
    Ok(())
}

/// Seeds Call-IDs, tags and branches differently in every process.
fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id())
}
