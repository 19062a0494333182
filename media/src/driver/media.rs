//! [`Media`]: the media plane's front — N shard threads behind one [`MediaControl`].
//!
//! A command goes to the shard that owns its call: the hash of the [`CallId`] picks it, so both
//! legs of a call (and every later command about it) land on the same shard. The caller waits for
//! the answer up to [`super::shard::REPLY_TIMEOUT`]; a shard that is gone or late is
//! [`ApiError::Unavailable`] (503). Events of every shard go to the one channel [`Media::start`]
//! returns. The port range is not split: every shard allocates from one shared
//! [`crate::ports::PortAllocator`] (locked on the control path only; see [`super::shard`]).
//!
//! ```no_run
//! use dialplane_media::api::{CallId, Command, EndpointSpec, LegId, MediaControl};
//! use dialplane_media::driver::{Media, MediaConfig};
//!
//! let (media, events) = Media::start(MediaConfig::default()).unwrap();
//! let call = CallId("abc@example".into());
//! for leg in [LegId(0), LegId(1)] {
//!     let spec = EndpointSpec::default();
//!     let answer = media.request(Command::CreateEndpoint { call_id: call.clone(), leg, spec });
//!     println!("{answer:?}");
//! }
//! media.request(Command::Bridge { call_id: call, a: LegId(0), b: LegId(1) }).unwrap();
//! # drop(events);
//! media.stop();
//! ```

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use super::ring::RingConfig;
use super::shard::{DriverError, ShardConfig, ShardHandle, ShardStats, SharedPorts, spawn};
use crate::api::{ApiError, CallId, Command, EndpointSpec, Event, LegId, MediaControl};
use crate::ports::PortAllocator;
use crate::ports::PortPair;

/// Media plane parameters (the `[media]` config section and rtpengine's flags).
#[derive(Debug, Clone, Copy)]
pub struct MediaConfig {
    /// Address the relay sockets bind to and the SDP advertises (`--interface`).
    pub interface: IpAddr,
    /// Lowest port (`--port-min`, even).
    pub port_min: u16,
    /// Highest port (`--port-max`).
    pub port_max: u16,
    /// Shard threads (`--num-threads`); 0 = one per core.
    pub num_threads: usize,
    /// Media timeout of legs whose spec has none.
    pub media_timeout: Duration,
    /// Ring parameters of every shard.
    pub ring: RingConfig,
    /// Posted `Destroy`s send each leg's final [`Event::Stats`] to the event channel (for CDRs).
    pub destroy_stats: bool,
}

impl Default for MediaConfig {
    /// 127.0.0.1, ports 30000–60000, one shard per core, 60 s media timeout.
    fn default() -> Self {
        MediaConfig {
            interface: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port_min: 30000,
            port_max: 60000,
            num_threads: 0,
            media_timeout: Duration::from_secs(60),
            ring: RingConfig::default(),
            destroy_stats: true,
        }
    }
}

/// The running media plane. Dropping it stops and joins every shard too.
#[derive(Debug)]
pub struct Media {
    shards: Vec<ShardHandle>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    ports: SharedPorts,
    interface: IpAddr,
}

impl Media {
    /// Start the shards; the receiver gets every shard's events.
    pub fn start(config: MediaConfig) -> Result<(Media, mpsc::Receiver<Event>), DriverError> {
        let ports = Arc::new(Mutex::new(PortAllocator::new(
            config.port_min,
            config.port_max,
        )?));
        let n = match config.num_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let (tx, rx) = mpsc::channel();
        let mut media = Media {
            shards: Vec::with_capacity(n),
            threads: Vec::with_capacity(n),
            ports: ports.clone(),
            interface: config.interface,
        };
        for _ in 0..n {
            let shard = ShardConfig {
                interface: config.interface,
                ring: config.ring,
                media_timeout: config.media_timeout,
                ports: ports.clone(),
                destroy_stats: config.destroy_stats,
                ..ShardConfig::default()
            };
            // On error the shards started so far are stopped by `media`'s Drop.
            let (handle, thread) = spawn(shard, tx.clone())?;
            media.shards.push(handle);
            media.threads.push(thread);
        }
        Ok((media, rx))
    }

    /// Every shard's counters, in shard order.
    pub fn stats(&self) -> Result<Vec<ShardStats>, DriverError> {
        self.shards.iter().map(ShardHandle::stats).collect()
    }

    /// Number of shards.
    pub fn num_shards(&self) -> usize {
        self.shards.len()
    }

    /// The shard that owns `call`.
    fn shard_of(&self, call: &CallId) -> &ShardHandle {
        &self.shards[self.shard_index(call)]
    }

    fn shard_index(&self, call: &CallId) -> usize {
        let mut h = DefaultHasher::new();
        call.hash(&mut h);
        (h.finish() % self.shards.len() as u64) as usize
    }

    /// Stop and join every shard.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Media {
    fn drop(&mut self) {
        for s in &self.shards {
            s.stop();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl MediaControl for Media {
    fn request(&self, cmd: Command) -> Result<Vec<Event>, ApiError> {
        if self.shards.is_empty() {
            return Err(ApiError::Unavailable("no media shard"));
        }
        self.shard_of(cmd.call_id()).request(cmd)
    }

    fn create_posted(
        &self,
        call_id: CallId,
        leg: LegId,
        spec: EndpointSpec,
    ) -> Result<(SocketAddr, PortPair), ApiError> {
        if self.shards.is_empty() {
            return Err(ApiError::Unavailable("no media shard"));
        }
        let shard = self.shard_of(&call_id);
        let reserved = shard.reserve(&self.ports, self.interface, spec.rtcp_mux)?;
        let ports = reserved.ports();
        shard.adopt(call_id, leg, spec, reserved)?;
        Ok((SocketAddr::new(self.interface, ports.rtp), ports))
    }

    fn post(&self, cmds: Vec<Command>) {
        self.split(cmds, ShardHandle::post);
    }

    fn post_deferred(&self, cmds: Vec<Command>) {
        self.split(cmds, ShardHandle::post_deferred);
    }

    fn flush(&self) {
        for s in &self.shards {
            s.flush();
        }
    }
}

impl Media {
    /// Hands each shard its share of `cmds`, in order.
    fn split(&self, cmds: Vec<Command>, post: fn(&ShardHandle, Vec<Command>)) {
        if self.shards.is_empty() {
            return;
        }
        if self.shards.len() == 1 {
            return post(&self.shards[0], cmds);
        }
        let mut by_shard: Vec<Vec<Command>> = vec![Vec::new(); self.shards.len()];
        for cmd in cmds {
            by_shard[self.shard_index(cmd.call_id())].push(cmd);
        }
        for (shard, cmds) in self.shards.iter().zip(by_shard) {
            if !cmds.is_empty() {
                post(shard, cmds);
            }
        }
    }
}
