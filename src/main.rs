//! dialplane: the binary. Parses the command line and the config file, then runs a command.
//!
//! Commands appear as they work: `dsp dtmf|amd FILE.wav` (offline analysis, JSON lines) and
//! `media` (the standalone relay driven by the rtpengine ng protocol) and `serve` (the call-control
//! server executing the control app's verbs), and `check-config FILE` (what `serve` would run
//! with, or every problem of the file).

mod analyse;
mod media_cmd;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use metrics_exporter_prometheus::PrometheusHandle;
use signaling::config::Config;

/// Carrier-grade call-control and media plane
#[derive(Parser, Debug)]
#[command(name = "dialplane", version, about)]
struct Cli {
    /// TOML configuration file (see dialplane.example.toml); flags override it
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the metrics in Prometheus text format on stderr when the command ends
    #[arg(long, global = true)]
    metrics: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Offline signal analysis of a WAV file (8/16/24/48 kHz mono PCM16, µ-law or A-law)
    #[command(subcommand)]
    Dsp(DspCommand),
    /// Standalone RTP relay driven by the rtpengine ng protocol (runs until SIGINT/SIGTERM)
    Media(media_cmd::MediaFlags),
    /// The call-control server: SIP, media, the control app's verbs, REST (runs until
    /// SIGINT/SIGTERM; prints `ready sip=ADDR http=ADDR` once listening)
    // Boxed: the largest variant by far, parsed once.
    Serve(Box<serve::ServeFlags>),
    /// Checks a config file as `serve` would (with the same flags, if given) and prints what it
    /// would run with, secrets redacted; or each problem, naming its key, and exit code 2
    CheckConfig(Box<CheckConfigArgs>),
}

#[derive(Args, Debug)]
struct CheckConfigArgs {
    /// The TOML file (what `serve --config` would get)
    file: PathBuf,
    #[command(flatten)]
    flags: serve::ServeFlags,
}

#[derive(Subcommand, Debug)]
enum DspCommand {
    /// DTMF digits, one JSON object per line: {"digit":"5","start_ms":120,"end_ms":180}
    Dtmf {
        /// The recording
        file: PathBuf,
    },
    /// Answering-machine detection, the file's start being the answer: amd, silence and beep
    /// events, one JSON object per line
    Amd {
        /// The recording
        file: PathBuf,
        #[command(flatten)]
        timers: AmdFlags,
    },
}

/// Overrides of the `[amd]` timers
#[derive(Args, Debug)]
struct AmdFlags {
    /// No speech for this long after answer: `silence` (default 5000)
    #[arg(long, value_name = "MS")]
    no_speech_timeout_ms: Option<u32>,
    /// Give up deciding after this long (default 15000)
    #[arg(long, value_name = "MS")]
    decision_timeout_ms: Option<u32>,
    /// Listen for a beep this long after answer (default 20000)
    #[arg(long, value_name = "MS")]
    tone_timeout_ms: Option<u32>,
    /// Silence that ends a machine greeting (default 2000)
    #[arg(long, value_name = "MS")]
    greeting_completion_timeout_ms: Option<u32>,
}

fn run(cli: Cli, prometheus: Option<PrometheusHandle>) -> anyhow::Result<()> {
    let load = || -> anyhow::Result<Config> {
        let config = match &cli.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        init_logging(&config);
        Ok(config)
    };
    let stdout = std::io::stdout().lock();
    match cli.command {
        Command::Serve(flags) => {
            let prepared = serve::prepare(cli.config.as_deref(), &flags)
                .map_err(|mut problems| problems.swap_remove(0))?;
            init_logging(&prepared.config);
            let prometheus = prometheus.context("the metrics recorder is not installed")?;
            let source = serve::Source {
                file: cli.config,
                flags: *flags,
            };
            serve::run(prepared, source, prometheus)
        }
        Command::CheckConfig(args) => {
            anyhow::ensure!(
                cli.config.is_none(),
                "check-config takes the file as its argument, not --config"
            );
            check_config(&args, stdout)
        }
        Command::Media(flags) => {
            let mut config = load()?;
            flags.apply(&mut config.media);
            config.validate("command line")?;
            media_cmd::run(&config.media, &flags)
        }
        Command::Dsp(DspCommand::Dtmf { file }) => {
            load()?;
            analyse::dtmf(&file, stdout)
        }
        Command::Dsp(DspCommand::Amd { file, timers }) => {
            let mut config = load()?;
            let t = &mut config.amd;
            let flags = [
                (&mut t.no_speech_timeout_ms, timers.no_speech_timeout_ms),
                (&mut t.decision_timeout_ms, timers.decision_timeout_ms),
                (&mut t.tone_timeout_ms, timers.tone_timeout_ms),
                (
                    &mut t.greeting_completion_timeout_ms,
                    timers.greeting_completion_timeout_ms,
                ),
            ];
            for (slot, flag) in flags {
                if let Some(v) = flag {
                    *slot = v;
                }
            }
            config.validate("command line")?;
            analyse::amd(&file, config.amd.into(), stdout)
        }
    }
}

/// `check-config`: [`serve::prepare`] on the file; the summary on stdout, or each problem on
/// stderr.
fn check_config(args: &CheckConfigArgs, mut out: impl std::io::Write) -> anyhow::Result<()> {
    match serve::prepare(Some(&args.file), &args.flags) {
        Ok(prepared) => {
            writeln!(out, "{}: ok; serve would run with:", args.file.display())?;
            writeln!(out, "{}", prepared.config.summary())?;
            Ok(())
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("dialplane: error: {p:#}");
            }
            anyhow::bail!("{}: {} problem(s)", args.file.display(), problems.len())
        }
    }
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The audio decoder logs what it then returns as an error (which we report): once is enough.
    let filter = [
        "symphonia_core",
        "symphonia_format_riff",
        "symphonia_bundle_mp3",
    ]
    .into_iter()
    .fold(filter, |f, target| {
        f.add_directive(format!("{target}=off").parse().expect("a valid directive"))
    });
    // stdout carries the JSON results; logs go to stderr.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let metrics = cli.metrics;
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder();
    let result = run(cli, recorder.as_ref().ok().cloned());
    if metrics && let Ok(handle) = &recorder {
        eprint!("{}", handle.render());
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the cause chain joined, nothing else.
            eprintln!("dialplane: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
