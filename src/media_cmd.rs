//! `dialplane media`: the standalone relay driven by the rtpengine ng protocol (a drop-in for
//! rtpengine behind Kamailio's or OpenSIPS's rtpengine module).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::SystemTime;

use anyhow::Context;
use clap::Args;
use media::driver::{Media, MediaConfig};
use media::ng::{HandlerConfig, NgHandler, NgServer};
use signaling::config::MediaSection;

/// The RTP relay's address, port range and threads (rtpengine's flag names), shared by `media`
/// and `serve`; each overrides its `[media]` key
#[derive(Args, Debug)]
pub struct RelayFlags {
    /// Bind the relay's ports on this address and advertise it in SDP (default 127.0.0.1)
    #[arg(long, value_name = "IP")]
    interface: Option<IpAddr>,
    /// Lowest RTP port (default 40000)
    #[arg(long, value_name = "PORT")]
    port_min: Option<u16>,
    /// Highest RTP port (default 49999)
    #[arg(long, value_name = "PORT")]
    port_max: Option<u16>,
    /// Shard threads, 0 = one per core (default 0)
    #[arg(long, value_name = "N")]
    num_threads: Option<usize>,
}

impl RelayFlags {
    /// Writes the given flags over the config file's `[media]` section.
    pub fn apply(&self, m: &mut MediaSection) {
        if let Some(v) = self.interface {
            m.interface = v;
        }
        if let Some(v) = self.port_min {
            m.port_min = v;
        }
        if let Some(v) = self.port_max {
            m.port_max = v;
        }
        if let Some(v) = self.num_threads {
            m.num_threads = v;
        }
    }
}

/// `dialplane media`'s flags: the relay's, the ng listener, taps
#[derive(Args, Debug)]
pub struct MediaFlags {
    /// Listen for the ng protocol on this UDP address (default 127.0.0.1:2223)
    #[arg(long, value_name = "ADDR")]
    listen_ng: Option<SocketAddr>,
    #[command(flatten)]
    relay: RelayFlags,
    /// Put DTMF and answering-machine-detection taps on every leg (to measure their cost)
    #[arg(long)]
    dsp_taps: bool,
    /// Put a dub track looping a tone on every N-th call (to measure the mixer's cost)
    #[arg(long, value_name = "N", default_value_t = 0)]
    dsp_dub_every: u32,
}

impl MediaFlags {
    /// Writes the given flags over the config file's `[media]` section.
    pub fn apply(&self, m: &mut MediaSection) {
        if let Some(v) = self.listen_ng {
            m.listen_ng = v;
        }
        self.relay.apply(m);
    }
}

/// The media plane's settings from `[media]` (both `media` and `serve` run one).
pub fn media_config(section: &MediaSection) -> MediaConfig {
    MediaConfig {
        interface: section.interface,
        port_min: section.port_min,
        port_max: section.port_max,
        num_threads: section.num_threads,
        media_timeout: std::time::Duration::from_secs(section.media_timeout_s.into()),
        ..MediaConfig::default()
    }
}

/// Runs the relay until SIGINT or SIGTERM.
pub fn run(section: &MediaSection, flags: &MediaFlags) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    let (media, events) =
        Media::start(media_config(section)).context("starting the media plane")?;
    let handler = NgHandler::new(
        HandlerConfig {
            dsp_taps: flags.dsp_taps,
            dub_every: flags.dsp_dub_every,
        },
        SystemTime::now(),
    );
    let mut server = NgServer::bind(section.listen_ng, handler)
        .with_context(|| format!("binding the ng listener {}", section.listen_ng))?;
    tracing::info!(
        listen_ng = %server.local_addr()?,
        interface = %section.interface,
        ports = %format_args!("{}-{}", section.port_min, section.port_max),
        shards = media.num_shards(),
        dsp_taps = flags.dsp_taps,
        dsp_dub_every = flags.dsp_dub_every,
        "dialplane media: relay running"
    );
    server
        .run(&media, Some(&events), &stop)
        .context("ng listener")?;
    tracing::info!("dialplane media: stopping");
    media.stop();
    Ok(())
}
