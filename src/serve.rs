//! `dialplane serve`: the call-control server — SIP (UDP + TCP, TLS when configured), the
//! in-process media plane, the B2BUA running each call's control app, and HTTP (REST call
//! control and `/metrics`).
//!
//! [`prepare`] is the one path from the config file and the flags to what `serve` runs with:
//! startup, `check-config` and SIGHUP reloads all take it. On SIGHUP the `--config` file is
//! read again (the flags still override it) and, when it passes, its reloadable sections (see
//! [`Config::reload`]) reach the B2BUA; a file that fails is logged and the running
//! configuration kept. Metric: `dialplane_config_reloads_total{result="ok|rejected"}`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use media::driver::{Media, MediaConfig};
use metrics_exporter_prometheus::PrometheusHandle;
use signaling::app::StaticApp;
use signaling::b2bua::{self, AppSource, Reload, Services};
use signaling::config::{self, Config, ServeOverrides};
use signaling::media_files::{MediaFiles, MediaFilesOptions, Synthesizer};
use signaling::rest::{CallRegistry, RestApi};
use signaling::transport::{TransportConfig, Transports};
use signaling::verbs::Hook;
use signaling::webhook::{WebhookClient, WebhookOptions};

use crate::media_cmd::{RelayFlags, media_config};

const RELOADS_METRIC: &str = "dialplane_config_reloads_total";

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
    /// Appends one JSON line per call leg to FILE (`[cdr] file`)
    #[arg(long, value_name = "FILE")]
    cdr_file: Option<PathBuf>,
    /// Resolve SIP host names with this name server (IP:PORT) instead of `[dns] nameservers`
    #[arg(long, value_name = "ADDR")]
    dns: Option<SocketAddr>,
    /// Share registrations, the call index, heartbeats and the nonce secret with the other
    /// instances of a cluster through this Redis (`[redis] url`)
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// On SIGTERM, calls up may go on this long while new ones get 503 (a second signal, or
    /// SIGINT, stops at once)
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub drain_timeout: u64,
}

impl ServeFlags {
    /// Writes the flags over the config file's values.
    fn apply(&self, c: &mut Config) {
        if let Some(a) = self.sip {
            c.sip.listen = vec![format!("udp:{a}"), format!("tcp:{a}")];
        }
        if let Some(a) = self.dns {
            c.dns.nameservers = vec![a];
        }
        if self.external_ip.is_some() {
            c.sip.external_ip = self.external_ip;
        }
        if self.redis.is_some() {
            c.redis.url.clone_from(&self.redis);
        }
        if self.cdr_file.is_some() {
            c.cdr.file.clone_from(&self.cdr_file);
        }
        self.relay.apply(&mut c.media);
        c.apply_overrides(ServeOverrides {
            http: self.http,
            api_token: self.api_token.clone(),
            app_file: self.app.clone(),
            app_url: self.app_url.clone(),
            webhook_secret: self.webhook_secret.clone(),
            status_hook: self.status_hook.clone(),
        });
    }
}

/// What `serve` runs with: the configuration with the flags applied, the app loaded, the
/// transports' settings (TLS certificate loaded)
pub struct Prepared {
    /// The effective configuration.
    pub config: Config,
    app: AppSource,
    transport: TransportConfig,
}

/// Reads `file` (else the embedded defaults), applies the flags and checks all `serve` needs
/// before it binds anything; on failure every problem found (a file that does not parse has
/// one). The file's values are checked before the flags are applied.
pub fn prepare(file: Option<&Path>, flags: &ServeFlags) -> Result<Prepared, Vec<anyhow::Error>> {
    let one = |e: anyhow::Error| vec![e];
    let mut config = match file {
        Some(path) => Config::read(path).map_err(|e| one(e.into()))?,
        None => Config::default(),
    };
    if let Some(path) = file {
        checked(config.problems(&path.display().to_string()))?;
    }
    flags.apply(&mut config);
    checked(config.problems("command line"))?;
    let app = match config.app.source().map_err(|e| one(e.into()))? {
        config::AppSource::Url(url) => AppSource::Webhook(Hook::post(url.to_string())),
        config::AppSource::File(path) => AppSource::Static(
            // The error names the file and the cause already: no chain to print.
            StaticApp::load(path, config.app.hook_base_url.as_deref())
                .map_err(|e| one(anyhow::anyhow!("loading the app: {e}")))?,
        ),
    };
    let mut transport = TransportConfig::from_config(&config.sip);
    if let Some(tls) = &config.sip.tls {
        transport.tls_server = Some(
            signaling::transport::load_tls_server(&tls.cert, &tls.key)
                .context("loading the SIP TLS certificate")
                .map_err(one)?,
        );
    }
    Ok(Prepared {
        config,
        app,
        transport,
    })
}

fn checked(problems: Vec<config::ConfigError>) -> Result<(), Vec<anyhow::Error>> {
    if problems.is_empty() {
        return Ok(());
    }
    Err(problems.into_iter().map(Into::into).collect())
}

/// Where a reload reads from: the `--config` file and the flags that override it
pub struct Source {
    /// `--config`, if given (without one SIGHUP has nothing to read).
    pub file: Option<PathBuf>,
    /// The flags `serve` was started with.
    pub flags: ServeFlags,
}

/// Runs the server until SIGINT or SIGTERM; SIGHUP reloads the configuration from `source`.
pub fn run(prepared: Prepared, source: Source, prometheus: PrometheusHandle) -> anyhow::Result<()> {
    // One thread for SIP, the B2BUA, webhooks and REST: they hand messages to each other all
    // the time, and across worker threads every hand-off was a wake-up and a context switch
    // (most of the CPU per call in perf). The media shards have threads of their own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(serve(prepared, source, prometheus))
}

fn webhook_client(config: &Config) -> anyhow::Result<WebhookClient> {
    Ok(WebhookClient::new(WebhookOptions {
        secret: config.app.webhook_secret.clone(),
        ..WebhookOptions::default()
    })?)
}

async fn serve(
    prepared: Prepared,
    source: Source,
    prometheus: PrometheusHandle,
) -> anyhow::Result<()> {
    let Prepared {
        config,
        app,
        transport,
    } = prepared;
    let mut config = Arc::new(config);
    let drain = Duration::from_secs(source.flags.drain_timeout);
    let (media, media_events) = Media::start(MediaConfig {
        // The media-event thread only needs destroyed legs' counters for CDRs.
        destroy_stats: config.cdr.enabled(),
        ..media_config(&config.media)
    })
    .context("starting the media plane")?;
    let media = Arc::new(media);
    let (transports, inbound) = Transports::bind(transport)
        .await
        .context("binding the SIP listeners")?;
    let http = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding the HTTP listener {}", config.http.listen))?;
    let http_addr = http.local_addr()?;
    let webhooks = webhook_client(&config)?;
    let cdr = signaling::cdr::Writer::start(
        &config.cdr,
        webhooks.clone(),
        tokio::runtime::Handle::current(),
    )?;
    let sip_addrs: Vec<String> = transports
        .local_addrs()
        .iter()
        .map(|(t, a)| format!("{t}:{}", signaling::redact::Addr(*a)))
        .collect();
    let sip_addr = transports
        .local_addrs()
        .first()
        .map(|(_, a)| a.to_string())
        .unwrap_or_default();
    let cluster = match &config.redis.url {
        Some(_) => Some(
            signaling::cluster::Cluster::connect(
                &config.redis,
                http_addr,
                &sip_addr,
                Duration::from_millis(u64::from(config.http.request_timeout_ms)),
            )
            .await
            .context("joining the cluster (--redis)")?,
        ),
        None => None,
    };
    let registry = Arc::new(match &cluster {
        Some(c) => CallRegistry::clustered(c.clone()),
        None => CallRegistry::default(),
    });
    let services = Services {
        media_ip: config.sip.external_ip.unwrap_or(config.media.interface),
        config: config.clone(),
        app,
        media: media.clone(),
        registry: registry.clone(),
        webhooks,
        seed: rand_seed(),
        cdr: cdr.as_ref().map(signaling::cdr::Writer::sink),
        media_files: MediaFiles::new(MediaFilesOptions {
            synthesizer: config.speech.tts_url.clone().map(|url| Synthesizer {
                url,
                api_key: config.speech.tts_api_key.clone(),
                language: config.speech.language.clone(),
                voice: config.speech.tts_voice.clone(),
            }),
            ..MediaFilesOptions::default()
        })
        .context("setting up the media file fetcher")?,
        cluster,
    };
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(None);
    let (mut b2bua, control) = b2bua::start(transports, inbound, media_events, services, drain_rx)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut stop_http = stop_rx.clone();
    let rest = RestApi::new(registry, prometheus, &config.http).with_calls(control.clone());
    let http_task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop_http.wait_for(|s| *s).await;
        };
        rest.serve(http, shutdown).await
    });
    use signaling::redact::{Addr, Ip};
    tracing::info!(sip = ?sip_addrs, http = %Addr(http_addr), media = %Ip(config.media.interface),
        ports = %format_args!("{}-{}", config.media.port_min, config.media.port_max),
        "dialplane serve: running");
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready sip={sip_addr} http={http_addr}")?;
        out.flush()?;
    }
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = hup.recv() => {
                reload(&source, &mut config, &control);
                continue;
            }
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
        break;
    }
    tracing::info!("dialplane serve: stopping");
    let _ = stop_tx.send(true);
    let _ = http_task.await;
    drop(stop_rx);
    if let Some(cdr) = cdr {
        // The last calls' records (a drain's) are written before the process ends.
        tokio::task::spawn_blocking(move || cdr.close()).await?;
    }
    Ok(())
}

/// SIGHUP: the file again, the flags over it; the B2BUA gets it if it passes.
fn reload(source: &Source, running: &mut Arc<Config>, b2bua: &b2bua::Handle) {
    let rejected = |why: &str| {
        metrics::counter!(RELOADS_METRIC, "result" => "rejected").increment(1);
        tracing::error!("SIGHUP: config reload rejected, the running config is kept: {why}");
    };
    let Some(file) = &source.file else {
        return rejected("serve was started without --config");
    };
    let prepared = match prepare(Some(file), &source.flags) {
        Ok(p) => p,
        Err(problems) => {
            let why: Vec<String> = problems.iter().map(|e| format!("{e:#}")).collect();
            return rejected(&why.join("; "));
        }
    };
    let r = running.reload(prepared.config);
    let mut webhooks = None;
    if r.config.app.webhook_secret != running.app.webhook_secret {
        match webhook_client(&r.config) {
            Ok(w) => webhooks = Some(w),
            Err(e) => return rejected(&format!("{e:#}")),
        }
    }
    for key in &r.needs_restart {
        tracing::warn!(
            key,
            "SIGHUP: [{key}] changed; that needs a restart, the running values stay"
        );
    }
    let config = Arc::new(r.config);
    if !b2bua.reload(Reload {
        config: config.clone(),
        app: prepared.app,
        webhooks,
    }) {
        return rejected("the B2BUA task has ended");
    }
    *running = config;
    metrics::counter!(RELOADS_METRIC, "result" => "ok").increment(1);
    // The app file's verbs are read again too, but only its path is compared here.
    let changed = if r.changed.is_empty() {
        "nothing".to_string()
    } else {
        r.changed.join("; ")
    };
    tracing::info!(file = %file.display(), changed = %changed, "SIGHUP: config reloaded");
}

/// Seeds Call-IDs, tags and branches differently in every process.
fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::process::id())
}
