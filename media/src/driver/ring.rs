//! The io_uring ring of one shard: the only module of the media crate with `unsafe` code.
//!
//! [`Ring`] owns the io_uring instance, one block of packet buffers (`buffers` × [`BUF_SIZE`]
//! bytes, allocated once), the provided-buffer ring that hands those buffers to the kernel, the
//! UDP sockets and the shard's wake-up eventfd. It offers a small safe API:
//!
//! - [`Ring::add_socket`] arms a receive on a socket (one multishot `RecvMsgMulti` over the
//!   provided-buffer ring, or, as a fallback, one plain `RecvMsg` at a time into a buffer of ours);
//! - [`Ring::wait`] submits what is queued and waits (bounded) for completions, which it copies
//!   into a preallocated batch; [`Ring::next_event`] turns each into an [`Event`];
//! - [`Ring::buf_mut`] lends a received buffer, [`Ring::send`] queues a `SendMsg` from that very
//!   buffer (returned to the kernel when the send completes), [`Ring::release`] returns a buffer
//!   that is not forwarded.
//!
//! Every operation carries a packed `user_data` (`pack`: kind << 56 | socket << 16 | buffer id): op kind, socket index, buffer id.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::{IoUring, Probe, cqueue, opcode, squeue, types};

/// Size of one packet buffer.
pub const BUF_SIZE: usize = 2048;
/// Buffer group id of the provided-buffer ring.
const BGID: u16 = 1;
/// Room for the source address in a receive: a `sockaddr_in6`.
const NAME_LEN: usize = 28;

/// Build an op on a socket by its fixed-file index when registered, else by its raw fd.
macro_rules! on_socket {
    ($fixed:expr, $idx:expr, $fd:expr, |$t:ident| $op:expr) => {
        if $fixed {
            let $t = types::Fixed($idx);
            $op
        } else {
            let $t = types::Fd($fd);
            $op
        }
    };
}

/// Op kinds in the top byte of `user_data`.
const KIND_RECV: u8 = 1;
const KIND_SEND: u8 = 2;
const KIND_CANCEL: u8 = 3;
const KIND_WAKE: u8 = 4;

/// Pack an op kind, a socket index and a buffer id into a `user_data`.
pub(crate) fn pack(kind: u8, sock: u32, bid: u16) -> u64 {
    (u64::from(kind) << 56) | (u64::from(sock) << 16) | u64::from(bid)
}

/// Inverse of [`pack`].
pub(crate) fn unpack(user_data: u64) -> (u8, u32, u16) {
    (
        (user_data >> 56) as u8,
        ((user_data >> 16) & 0xffff_ffff) as u32,
        user_data as u16,
    )
}

/// How sockets receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvMode {
    /// One multishot `RecvMsgMulti` per socket over the provided-buffer ring.
    Multishot,
    /// One plain `RecvMsg` in flight per socket, into a buffer taken from a userspace free list.
    Plain,
}

/// Ring parameters.
#[derive(Debug, Clone, Copy)]
pub struct RingConfig {
    /// Submission queue entries (the completion queue gets four times as many).
    pub entries: u32,
    /// Packet buffers (a power of two, at most 32768).
    pub buffers: u16,
    /// Most sockets at once.
    pub max_sockets: u32,
    /// Use plain `RecvMsg` even if the kernel has multishot receive and buffer rings.
    pub force_plain: bool,
    /// Send buffers for packets the shard makes itself (players, DTMF, RTCP reports); never
    /// given to the kernel for receiving.
    pub tx_buffers: u16,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            entries: 1024,
            buffers: 1024,
            max_sockets: 8192,
            force_plain: false,
            tx_buffers: 64,
        }
    }
}

/// What the ring got from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingInfo {
    /// `IORING_SETUP_SINGLE_ISSUER` obtained.
    pub single_issuer: bool,
    /// `IORING_SETUP_DEFER_TASKRUN` obtained.
    pub defer_taskrun: bool,
    /// How sockets receive.
    pub mode: RecvMode,
    /// Packet buffers.
    pub buffers: u16,
    /// Send buffers ([`RingConfig::tx_buffers`]).
    pub tx_buffers: u16,
    /// Sockets are registered files (ops name a fixed-file index, not a raw fd).
    pub fixed_files: bool,
}

/// Counters the ring keeps (plain integers; the shard exports them as metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingCounters {
    /// Multishot receives re-armed because a completion came without `more()`.
    pub multishot_rearms: u64,
    /// Receive completions with an error (e.g. `ENOBUFS` when every buffer is in use).
    pub recv_errors: u64,
    /// Send completions with an error.
    pub send_errors: u64,
    /// Receives whose payload did not fit a buffer (dropped).
    pub truncated: u64,
    /// Plain receives that waited for a free buffer.
    pub starved: u64,
}

/// A received datagram, still in its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Socket index it arrived on.
    pub sock: u32,
    /// Buffer id holding it.
    pub bid: u16,
    /// Source address.
    pub src: SocketAddr,
    /// Payload offset within the buffer.
    pub off: usize,
    /// Payload length.
    pub len: usize,
}

/// One completion, interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A datagram: forward it with [`Ring::send`] or give it back with [`Ring::release`].
    Packet(Packet),
    /// The eventfd was written: commands may be waiting.
    Wake,
    /// A socket removed with [`Ring::remove_socket`] has no op left and is closed.
    Closed(u32),
    /// Bookkeeping only (send done, cancel done, receive error, re-arm).
    Nothing,
}

/// Wakes the shard from another thread by writing its eventfd.
#[derive(Debug, Clone)]
pub struct Waker {
    fd: Arc<OwnedFd>,
}

impl Waker {
    /// Wake the ring's [`Ring::wait`].
    pub fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: `fd` is an open eventfd kept alive by the Arc; `one` is 8 readable bytes, the
        // size an eventfd write takes. A failure (counter saturated) still leaves it readable.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }
}

/// Buffer states, for bookkeeping and to refuse double returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BufState {
    /// In the kernel's hands (provided-buffer ring, or a plain receive in flight).
    Kernel,
    /// Lent to the shard by an [`Event::Packet`].
    User,
    /// A send from it is in flight.
    Sending,
    /// On a userspace free list (plain mode, or a send buffer).
    Free,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SockState {
    Free,
    Open,
    /// Cancelled; waiting for the final receive completion.
    Closing,
}

/// What a plain receive hands the kernel: it reads `hdr`/`iov` and writes `hdr` and `name` while
/// the receive is in flight, so these live in a slice allocated once, never moved, and touched
/// from Rust only through raw pointers while no receive of that socket is in flight.
#[repr(C)]
struct RecvIo {
    hdr: libc::msghdr,
    iov: libc::iovec,
    name: libc::sockaddr_in6,
}

/// Per-socket state on the Rust side (the kernel never sees it).
struct RecvSlot {
    /// Plain mode: buffer of the receive in flight.
    bid: u16,
    armed: bool,
    /// Registered in the fixed-file table at the socket's index.
    fixed: bool,
    state: SockState,
    sock: Option<UdpSocket>,
}

/// Per-buffer send state (a send always goes from the buffer it names).
#[repr(C)]
struct SendSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    dest: libc::sockaddr_in6,
    sock: u32,
}

/// The io_uring ring of one shard. See the module docs.
pub struct Ring {
    ring: IoUring,
    info: RingInfo,
    counters: RingCounters,
    /// Buffer memory, `buffers * BUF_SIZE` bytes, from `Box::into_raw`; freed in `Drop`.
    bufs: *mut u8,
    /// Provided-buffer ring (mmap'd, page aligned) in multishot mode, else null.
    br: *mut types::BufRingEntry,
    br_tail: u16,
    buf_state: Vec<BufState>,
    in_use: usize,
    free: Vec<u16>,
    /// Free send buffers (ids `buffers..buffers + tx_buffers`).
    free_tx: Vec<u16>,
    /// Multishot mode: the template msghdr (only the name and control lengths count).
    ms_hdr: Box<libc::msghdr>,
    /// From `Box::into_raw`; freed in `Drop`.
    recv: Vec<RecvSlot>,
    /// One per socket; from `Box::into_raw`, freed in `Drop`.
    recv_io: *mut RecvIo,
    free_socks: Vec<u32>,
    /// Plain mode: sockets waiting for a free buffer.
    starved: Vec<u32>,
    sends: *mut SendSlot,
    wake_fd: Arc<OwnedFd>,
    /// From `Box::into_raw`; the eventfd read lands here. Freed in `Drop`.
    wake_buf: *mut u64,
    batch: Vec<cqueue::Entry>,
    /// Next entry of `batch` for `next_event`.
    batch_pos: usize,
    max_sockets: u32,
    /// Ops submitted whose final completion has not arrived.
    inflight: usize,
    /// Dropping: do not re-arm the eventfd read.
    shutdown: bool,
}

// SAFETY: the raw pointers are owned allocations of this Ring (nothing else aliases them), so
// moving the whole Ring to another thread (e.g. the shard thread) is sound; it is not `Sync`.
unsafe impl Send for Ring {}

fn zeroed_msghdr() -> libc::msghdr {
    // SAFETY: msghdr is a plain C struct for which all-zero bytes are a valid value.
    unsafe { std::mem::zeroed() }
}

fn zeroed_sin6() -> libc::sockaddr_in6 {
    // SAFETY: sockaddr_in6 is a plain C struct for which all-zero bytes are a valid value.
    unsafe { std::mem::zeroed() }
}

/// CPU time (user + system) consumed so far by the calling thread, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID needs nothing else.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// Is io_uring usable here with the ops the driver needs (a plain ring, `RecvMsg`, `SendMsg`,
/// `Read`, `AsyncCancel`)? `Err` says why not.
///
/// The probe ring lives on a short-lived thread of its own: tearing a ring down can post task
/// work to the thread that used it, which interrupts that thread's blocking system calls (EINTR).
pub fn probe() -> Result<(), String> {
    std::thread::scope(|s| {
        s.spawn(probe_here)
            .join()
            .unwrap_or_else(|_| Err("io_uring probe thread panicked".into()))
    })
}

fn probe_here() -> Result<(), String> {
    let ring = IoUring::new(8).map_err(|e| format!("io_uring_setup: {e}"))?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("io_uring probe: {e}"))?;
    for (code, name) in [
        (opcode::RecvMsg::CODE, "RecvMsg"),
        (opcode::SendMsg::CODE, "SendMsg"),
        (opcode::Read::CODE, "Read"),
        (opcode::AsyncCancel::CODE, "AsyncCancel"),
    ] {
        if !probe.is_supported(code) {
            return Err(format!("io_uring lacks {name}"));
        }
    }
    Ok(())
}

fn build_ring(entries: u32) -> io::Result<(IoUring, bool, bool)> {
    let cq = entries.saturating_mul(4);
    match IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(cq)
        .build(entries)
    {
        Ok(r) => return Ok((r, true, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
        Err(e) => return Err(e),
    }
    match IoUring::builder()
        .setup_single_issuer()
        .setup_cqsize(cq)
        .build(entries)
    {
        Ok(r) => return Ok((r, true, false)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
        Err(e) => return Err(e),
    }
    Ok((
        IoUring::builder().setup_cqsize(cq).build(entries)?,
        false,
        false,
    ))
}

impl Ring {
    /// Create the ring, the buffers and (unless `force_plain` or unsupported) the
    /// provided-buffer ring.
    pub fn new(config: RingConfig) -> io::Result<Ring> {
        let nbuf = config.buffers;
        if !nbuf.is_power_of_two() || nbuf > 32768 || config.tx_buffers > 32768 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffers must be a power of two up to 32768, tx_buffers at most 32768",
            ));
        }
        let ntx = config.tx_buffers;
        let total = usize::from(nbuf) + usize::from(ntx);
        let (ring, single_issuer, defer_taskrun) = build_ring(config.entries)?;
        let fixed_files = ring
            .submitter()
            .register_files_sparse(config.max_sockets)
            .is_ok();
        let bufs = Box::into_raw(vec![0u8; total * BUF_SIZE].into_boxed_slice()).cast::<u8>();
        let max = config.max_sockets as usize;
        let recv_io: Box<[RecvIo]> = (0..max)
            .map(|_| RecvIo {
                hdr: zeroed_msghdr(),
                iov: libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
                name: zeroed_sin6(),
            })
            .collect();
        let recv_slots: Vec<RecvSlot> = (0..max)
            .map(|_| RecvSlot {
                bid: 0,
                armed: false,
                fixed: false,
                state: SockState::Free,
                sock: None,
            })
            .collect();
        let send_slots: Box<[SendSlot]> = (0..total)
            .map(|_| SendSlot {
                hdr: zeroed_msghdr(),
                iov: libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
                dest: zeroed_sin6(),
                sock: 0,
            })
            .collect();
        // SAFETY: plain eventfd(2) call; the result is checked before use.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `efd` is a freshly created descriptor that nothing else owns.
        let wake_fd = Arc::new(unsafe { OwnedFd::from_raw_fd(efd) });
        let mut ms_hdr = Box::new(zeroed_msghdr());
        ms_hdr.msg_namelen = NAME_LEN as u32;
        let mut r = Ring {
            ring,
            info: RingInfo {
                single_issuer,
                defer_taskrun,
                mode: RecvMode::Plain,
                buffers: nbuf,
                tx_buffers: ntx,
                fixed_files,
            },
            counters: RingCounters::default(),
            bufs,
            br: std::ptr::null_mut(),
            br_tail: 0,
            buf_state: vec![BufState::Free; total],
            in_use: 0,
            free: (0..nbuf).rev().collect(),
            free_tx: (nbuf..nbuf + ntx).rev().collect(),
            ms_hdr,
            recv: recv_slots,
            recv_io: Box::into_raw(recv_io).cast::<RecvIo>(),
            free_socks: (0..config.max_sockets).rev().collect(),
            starved: Vec::with_capacity(max),
            sends: Box::into_raw(send_slots).cast::<SendSlot>(),
            wake_fd,
            wake_buf: Box::into_raw(Box::new(0u64)),
            batch: Vec::with_capacity(config.entries as usize * 4),
            batch_pos: 0,
            max_sockets: config.max_sockets,
            inflight: 0,
            shutdown: false,
        };
        if !config.force_plain {
            r.setup_buf_ring();
        }
        r.arm_wake();
        Ok(r)
    }

    /// Try to register the provided-buffer ring and fill it with every buffer.
    fn setup_buf_ring(&mut self) {
        let nbuf = self.info.buffers;
        let size = usize::from(nbuf) * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: anonymous private mapping, no file; the result is checked against MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_PRIVATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return;
        }
        // SAFETY: `p` is a page-aligned mapping of `nbuf` entries that stays mapped until `Drop`,
        // which unregisters the group (by dropping the ring) before unmapping it.
        let ok = unsafe {
            self.ring
                .submitter()
                .register_buf_ring_with_flags(p as u64, nbuf, BGID, 0)
        };
        if ok.is_err() {
            // SAFETY: `p`/`size` is the mapping made above, never registered.
            unsafe { libc::munmap(p, size) };
            return;
        }
        self.br = p.cast();
        self.info.mode = RecvMode::Multishot;
        self.free.clear();
        for bid in 0..nbuf {
            self.buf_state[usize::from(bid)] = BufState::Kernel;
            self.br_add(bid);
        }
        self.br_publish();
    }

    /// Ring parameters obtained.
    pub fn info(&self) -> RingInfo {
        self.info
    }

    /// Counters so far.
    pub fn counters(&self) -> RingCounters {
        self.counters
    }

    /// Buffers currently out of the kernel's hands (lent to the shard or being sent).
    pub fn buffers_in_use(&self) -> usize {
        self.in_use
    }

    /// A handle that wakes [`Ring::wait`] from any thread.
    pub fn waker(&self) -> Waker {
        Waker {
            fd: self.wake_fd.clone(),
        }
    }

    fn recv_slot(&mut self, sock: u32) -> Option<&mut RecvSlot> {
        self.recv.get_mut(sock as usize)
    }

    /// The kernel-visible receive area of socket `sock` (`sock < max_sockets`).
    fn recv_io(&self, sock: u32) -> *mut RecvIo {
        debug_assert!(sock < self.max_sockets);
        let sock = sock.min(self.max_sockets.saturating_sub(1));
        // SAFETY: clamped below max_sockets, the length of the `recv_io` allocation.
        unsafe { self.recv_io.add(sock as usize) }
    }

    fn buf_ptr(&self, bid: u16) -> *mut u8 {
        // SAFETY: `bid < buffers + tx_buffers`, so the offset stays inside the `bufs` allocation.
        unsafe { self.bufs.add(usize::from(bid) * BUF_SIZE) }
    }

    /// Append buffer `bid` to the provided-buffer ring (published by `br_publish`).
    fn br_add(&mut self, bid: u16) {
        let mask = self.info.buffers - 1;
        let addr = self.buf_ptr(bid) as u64;
        // SAFETY: `br` maps `buffers` entries and the index is masked into range; the kernel
        // only reads entries at or past the head it owns, which are older than our tail, so the
        // entry at our (unpublished) tail is ours to write.
        let entry = unsafe { &mut *self.br.add(usize::from(self.br_tail & mask)) };
        entry.set_addr(addr);
        entry.set_len(BUF_SIZE as u32);
        entry.set_bid(bid);
        self.br_tail = self.br_tail.wrapping_add(1);
    }

    /// Make the added buffers visible to the kernel.
    fn br_publish(&self) {
        // SAFETY: `br` is the registered ring; its tail field is the `resv` of entry 0, a u16
        // the kernel reads atomically; the Release store publishes the entries written before.
        unsafe {
            let tail = types::BufRingEntry::tail(self.br).cast_mut();
            AtomicU16::from_ptr(tail).store(self.br_tail, Ordering::Release);
        }
    }

    /// Queue an SQE, submitting first if the queue is full.
    ///
    /// # Safety
    /// Every pointer in `entry` must stay valid until its final completion.
    /// Returns false if the queue stayed full (the op was not queued).
    #[must_use]
    unsafe fn push(&mut self, entry: &squeue::Entry) -> bool {
        // SAFETY: the caller guarantees the entry's memory outlives the op.
        if unsafe { self.ring.submission().push(entry) }.is_err() {
            let _ = self.ring.submit();
            // SAFETY: as above.
            if unsafe { self.ring.submission().push(entry) }.is_err() {
                return false;
            }
        }
        self.inflight += 1;
        true
    }

    fn arm_wake(&mut self) {
        let e = opcode::Read::new(types::Fd(self.wake_fd.as_raw_fd()), self.wake_buf.cast(), 8)
            .build()
            .user_data(pack(KIND_WAKE, 0, 0));
        // SAFETY: `wake_buf` is an 8-byte allocation freed only in `Drop` after the ring.
        if !unsafe { self.push(&e) } {
            // Commands are still polled every loop turn; only the early wake-up is lost.
            self.counters.recv_errors += 1;
        }
    }

    /// Take ownership of `sock`, which must be non-blocking, and arm its receive. Returns its
    /// index.
    pub fn add_socket(&mut self, sock: UdpSocket) -> io::Result<u32> {
        let Some(idx) = self.free_socks.pop() else {
            return Err(io::Error::other("too many sockets on this shard"));
        };
        let Some(slot) = self.recv_slot(idx) else {
            return Err(io::Error::other("socket index out of range"));
        };
        let fd = sock.as_raw_fd();
        slot.sock = Some(sock);
        slot.state = SockState::Open;
        slot.armed = false;
        slot.fixed = false;
        if self.info.fixed_files
            && self
                .ring
                .submitter()
                .register_files_update(idx, &[fd])
                .is_ok()
            && let Some(slot) = self.recv_slot(idx)
        {
            slot.fixed = true;
        }
        self.arm_recv(idx);
        Ok(idx)
    }

    /// Socket indexes still free.
    pub fn free_sockets(&self) -> usize {
        self.free_socks.len()
    }

    /// Reads and discards what waits in open socket `sock`'s queue (its receive was not armed,
    /// e.g. while buffers ran out); returns how many datagrams. For a socket that changes leg.
    pub fn drain(&mut self, sock: u32) -> u64 {
        let Some(s) = self.recv_slot(sock).and_then(|s| s.sock.as_ref()) else {
            return 0;
        };
        let mut buf = [0u8; 64];
        let mut n = 0;
        // Bounded: a flood arriving meanwhile is left to the armed receive (and dropped there).
        while n < 1024 && s.recv(&mut buf).is_ok() {
            n += 1;
        }
        n
    }

    /// Local address of socket `sock`.
    pub fn local_addr(&mut self, sock: u32) -> Option<SocketAddr> {
        self.recv_slot(sock)?.sock.as_ref()?.local_addr().ok()
    }

    /// Cancel the receive of `sock`; it is closed and its index freed once the kernel is done
    /// ([`Event::Closed`]). Sends already queued from it still complete.
    pub fn remove_socket(&mut self, sock: u32) {
        let Some(slot) = self.recv_slot(sock) else {
            return;
        };
        if slot.state != SockState::Open {
            return;
        }
        slot.state = SockState::Closing;
        if slot.armed {
            let e = opcode::AsyncCancel::new(pack(KIND_RECV, sock, 0))
                .build()
                .user_data(pack(KIND_CANCEL, sock, 0));
            // SAFETY: a cancel carries no pointers. If it cannot be queued the socket stays
            // Closing: its packets are dropped and the receive ends when the ring is dropped.
            let _ = unsafe { self.push(&e) };
        } else {
            self.finish_close(sock);
        }
    }

    fn finish_close(&mut self, sock: u32) {
        let Some(slot) = self.recv_slot(sock) else {
            return;
        };
        let fixed = std::mem::take(&mut slot.fixed);
        slot.sock = None;
        slot.state = SockState::Free;
        if fixed {
            let _ = self.ring.submitter().register_files_update(sock, &[-1]);
        }
        self.free_socks.push(sock);
        if let Some(i) = self.starved.iter().position(|&s| s == sock) {
            self.starved.swap_remove(i);
        }
    }

    fn arm_recv(&mut self, sock: u32) {
        let Some(slot) = self.recv_slot(sock) else {
            return;
        };
        if slot.state != SockState::Open || slot.armed {
            return;
        }
        let fixed = slot.fixed;
        let Some(fd) = slot.sock.as_ref().map(|s| s.as_raw_fd()) else {
            return;
        };
        let entry = if self.info.mode == RecvMode::Plain {
            let Some(bid) = self.free.pop() else {
                self.counters.starved += 1;
                self.starved.push(sock);
                return;
            };
            self.buf_state[usize::from(bid)] = BufState::Kernel;
            let buf = self.buf_ptr(bid);
            let io = self.recv_io(sock);
            let Some(slot) = self.recv_slot(sock) else {
                return;
            };
            slot.bid = bid;
            // SAFETY: `io` points into the live `recv_io` allocation and no receive of this
            // socket is in flight (`armed` is false), so the kernel does not touch it now.
            let hdr = unsafe {
                (*io).iov = libc::iovec {
                    iov_base: buf.cast(),
                    iov_len: BUF_SIZE,
                };
                (*io).hdr = zeroed_msghdr();
                (*io).hdr.msg_name = (&raw mut (*io).name).cast();
                (*io).hdr.msg_namelen = NAME_LEN as u32;
                (*io).hdr.msg_iov = &raw mut (*io).iov;
                (*io).hdr.msg_iovlen = 1;
                &raw mut (*io).hdr
            };
            on_socket!(fixed, sock, fd, |t| opcode::RecvMsg::new(t, hdr).build())
                .user_data(pack(KIND_RECV, sock, bid))
        } else {
            let ms_hdr: *const libc::msghdr = &*self.ms_hdr;
            on_socket!(fixed, sock, fd, |t| opcode::RecvMsgMulti::new(
                t, ms_hdr, BGID
            )
            .build())
            .user_data(pack(KIND_RECV, sock, 0))
        };
        // SAFETY: the msghdr (the template or the slot's), its iovec and name field live in
        // allocations freed only in `Drop`, and a slot is reused only after its final receive
        // completion; the plain-mode buffer is marked Kernel until that completion.
        if unsafe { self.push(&entry) } {
            if let Some(slot) = self.recv_slot(sock) {
                slot.armed = true;
            }
        } else {
            // Queue full even after a submit: retry on the next `wait`.
            if self.info.mode == RecvMode::Plain
                && let Some(slot) = self.recv_slot(sock)
            {
                let bid = slot.bid;
                self.buf_state[usize::from(bid)] = BufState::Free;
                self.free.push(bid);
            }
            self.starved.push(sock);
        }
    }

    /// Submit what is queued, wait up to `timeout` for at least one completion, and collect up
    /// to `max` completions into the batch; [`Ring::next_event`] hands them out. Completions of
    /// the previous batch not taken yet are handled first (their packets dropped).
    pub fn wait(&mut self, timeout: Duration, max: usize) -> io::Result<usize> {
        while let Some(ev) = self.next_event() {
            if let Event::Packet(p) = ev {
                self.release(p.bid);
            }
        }
        self.batch.clear();
        self.batch_pos = 0;
        for _ in 0..self.starved.len() {
            if let Some(sock) = self.starved.pop() {
                self.arm_recv(sock);
            }
        }
        if self.ring.completion().is_empty() {
            let ts = types::Timespec::from(timeout);
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                    ) => {}
                Err(e) => return Err(e),
            }
        } else {
            self.ring.submit()?;
        }
        let max = max.min(self.batch.capacity());
        let batch = &mut self.batch;
        for cqe in self.ring.completion().take(max) {
            batch.push(cqe);
        }
        Ok(self.batch.len())
    }

    /// Submit queued SQEs (e.g. the sends of a batch) without waiting.
    pub fn submit(&mut self) -> io::Result<()> {
        self.ring.submit().map(drop)
    }

    /// The next completion of the batch collected by [`Ring::wait`], interpreted.
    pub fn next_event(&mut self) -> Option<Event> {
        let cqe = self.batch.get(self.batch_pos)?;
        self.batch_pos += 1;
        let (res, flags) = (cqe.result(), cqe.flags());
        let (kind, sock, bid) = unpack(cqe.user_data());
        Some(match kind {
            KIND_RECV => self.on_recv(sock, bid, res, flags),
            KIND_SEND => {
                self.inflight -= 1;
                if res < 0 {
                    self.counters.send_errors += 1;
                }
                self.give_back(bid);
                Event::Nothing
            }
            KIND_WAKE => {
                self.inflight -= 1;
                if !self.shutdown {
                    self.arm_wake();
                }
                Event::Wake
            }
            _ => {
                self.inflight -= 1;
                Event::Nothing
            }
        })
    }

    fn on_recv(&mut self, sock: u32, ud_bid: u16, res: i32, flags: u32) -> Event {
        let multishot = self.info.mode == RecvMode::Multishot;
        let more = multishot && cqueue::more(flags);
        let bid = if multishot {
            cqueue::buffer_select(flags)
        } else {
            Some(ud_bid)
        };
        if !more {
            self.inflight -= 1;
            if let Some(slot) = self.recv_slot(sock) {
                slot.armed = false;
            }
        }
        let bid = bid.filter(|b| *b < self.info.buffers);
        if let Some(b) = bid {
            self.buf_state[usize::from(b)] = BufState::User;
            self.in_use += 1;
        }
        let closing = self
            .recv_slot(sock)
            .is_none_or(|slot| slot.state != SockState::Open);
        // Read the packet before re-arming: a plain re-arm reuses the slot's msghdr and name.
        let event = match bid {
            None => {
                if res < 0 {
                    self.counters.recv_errors += 1;
                }
                Event::Nothing
            }
            Some(bid) if res < 0 || closing => {
                if res < 0 {
                    self.counters.recv_errors += 1;
                }
                self.give_back(bid);
                Event::Nothing
            }
            Some(bid) => {
                let parsed = if multishot {
                    self.parse_multishot(bid, res as usize)
                } else {
                    if sock >= self.max_sockets {
                        self.give_back(bid);
                        return Event::Nothing;
                    }
                    let io = self.recv_io(sock);
                    // SAFETY: this is the final completion of the plain receive that used `io`,
                    // so the kernel is done with it; it is re-armed only below.
                    let (truncated, name) =
                        unsafe { ((*io).hdr.msg_flags & libc::MSG_TRUNC != 0, (*io).name) };
                    let src = sockaddr_from_sin6(&name);
                    src.filter(|_| !truncated).map(|s| (s, 0, res as usize))
                };
                match parsed {
                    Some((src, off, len)) => Event::Packet(Packet {
                        sock,
                        bid,
                        src,
                        off,
                        len,
                    }),
                    None => {
                        self.counters.truncated += 1;
                        self.give_back(bid);
                        Event::Nothing
                    }
                }
            }
        };
        if !more {
            if closing {
                self.finish_close(sock);
                return Event::Closed(sock);
            }
            if multishot {
                self.counters.multishot_rearms += 1;
            }
            self.arm_recv(sock);
        }
        event
    }

    /// Source, payload offset and length of a multishot receive in buffer `bid`.
    fn parse_multishot(&mut self, bid: u16, len: usize) -> Option<(SocketAddr, usize, usize)> {
        let hdr = *self.ms_hdr;
        let buf = &*self.buf_mut(bid);
        let out = types::RecvMsgOut::parse(buf.get(..len)?, &hdr).ok()?;
        if out.is_payload_truncated() || out.is_name_data_truncated() {
            return None;
        }
        let src = sockaddr_from_bytes(out.name_data())?;
        let payload = out.payload_data();
        let off = payload.as_ptr() as usize - buf.as_ptr() as usize;
        Some((src, off, payload.len()))
    }

    /// The whole buffer `bid`, lent by an [`Event::Packet`] and not yet sent or released.
    /// Buffers the shard does not own read as empty.
    pub fn buf_mut(&mut self, bid: u16) -> &mut [u8] {
        if self.buf_state.get(usize::from(bid)) != Some(&BufState::User) {
            return &mut [];
        }
        // SAFETY: the buffer is in state User: the kernel neither writes it (not in the buffer
        // ring, no receive or send in flight) nor does another live slice exist, since
        // `&mut self` is held for the slice's lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.buf_ptr(bid), BUF_SIZE) }
    }

    /// Send `len` bytes at `off` of buffer `bid` from socket `sock` to `dest`. The buffer goes
    /// back to the kernel when the send completes. Queued; submitted by the next
    /// [`Ring::submit`] or [`Ring::wait`].
    pub fn send(&mut self, sock: u32, bid: u16, off: usize, len: usize, dest: SocketAddr) {
        if self.buf_state.get(usize::from(bid)) != Some(&BufState::User)
            || off.saturating_add(len) > BUF_SIZE
        {
            return;
        }
        let Some((fd, fixed)) = self
            .recv_slot(sock)
            .and_then(|slot| slot.sock.as_ref().map(|s| (s.as_raw_fd(), slot.fixed)))
        else {
            self.give_back(bid);
            return;
        };
        let base = self.buf_ptr(bid);
        // SAFETY: `bid < buffers + tx_buffers` (checked through `buf_state`), the length of
        // `sends`.
        let slot = unsafe { &mut *self.sends.add(usize::from(bid)) };
        slot.sock = sock;
        let namelen = sockaddr_to_sin6(dest, &mut slot.dest);
        slot.iov = libc::iovec {
            // SAFETY: `off + len <= BUF_SIZE` was checked, so this stays inside buffer `bid`.
            iov_base: unsafe { base.add(off) }.cast(),
            iov_len: len,
        };
        slot.hdr = zeroed_msghdr();
        slot.hdr.msg_name = (&raw mut slot.dest).cast();
        slot.hdr.msg_namelen = namelen;
        slot.hdr.msg_iov = &raw mut slot.iov;
        slot.hdr.msg_iovlen = 1;
        let hdr = &raw const slot.hdr;
        let e = on_socket!(fixed, sock, fd, |t| opcode::SendMsg::new(t, hdr).build())
            .user_data(pack(KIND_SEND, sock, bid));
        self.buf_state[usize::from(bid)] = BufState::Sending;
        // SAFETY: the send slot and buffer `bid` belong to this send until its completion (the
        // buffer is in state Sending and goes back only in `next_event`); both live until `Drop`.
        if !unsafe { self.push(&e) } {
            self.counters.send_errors += 1;
            self.give_back(bid);
        }
    }

    /// Lend a free send buffer (for [`Ring::buf_mut`] then [`Ring::send`] or [`Ring::release`]);
    /// `None` when all are in flight.
    pub fn tx_buffer(&mut self) -> Option<u16> {
        let bid = self.free_tx.pop()?;
        self.buf_state[usize::from(bid)] = BufState::User;
        Some(bid)
    }

    /// Give buffer `bid` back without sending it.
    pub fn release(&mut self, bid: u16) {
        if self.buf_state.get(usize::from(bid)) == Some(&BufState::User) {
            self.give_back(bid);
        }
    }

    fn give_back(&mut self, bid: u16) {
        let i = usize::from(bid);
        if !matches!(
            self.buf_state.get(i),
            Some(BufState::User | BufState::Sending)
        ) {
            return;
        }
        if bid >= self.info.buffers {
            self.buf_state[i] = BufState::Free;
            self.free_tx.push(bid);
            return;
        }
        self.in_use -= 1;
        if self.info.mode == RecvMode::Multishot {
            self.buf_state[i] = BufState::Kernel;
            self.br_add(bid);
            self.br_publish();
        } else {
            self.buf_state[i] = BufState::Free;
            self.free.push(bid);
            if let Some(sock) = self.starved.pop() {
                self.arm_recv(sock);
            }
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // Cancel every receive and the eventfd read, then wait (bounded) for the kernel to be
        // done with our memory. If it is not, the memory is leaked rather than freed under it.
        self.shutdown = true;
        let e = opcode::AsyncCancel::new(pack(KIND_WAKE, 0, 0))
            .build()
            .user_data(pack(KIND_CANCEL, 0, 0));
        // SAFETY: a cancel carries no pointers.
        let _ = unsafe { self.push(&e) };
        for sock in 0..self.max_sockets {
            self.remove_socket(sock);
        }
        for _ in 0..100 {
            if self.inflight == 0 {
                break;
            }
            if self.wait(Duration::from_millis(10), usize::MAX).is_err() {
                break;
            }
            while let Some(ev) = self.next_event() {
                if let Event::Packet(p) = ev {
                    self.release(p.bid);
                }
            }
        }
        if self.inflight != 0 {
            return;
        }
        let nbuf = usize::from(self.info.buffers);
        let total = nbuf + usize::from(self.info.tx_buffers);
        let max = self.max_sockets as usize;
        // SAFETY: no op is in flight any more, so the kernel holds no pointer into these
        // allocations; each is freed exactly once with the layout it was made with.
        unsafe {
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                self.bufs,
                total * BUF_SIZE,
            )));
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                self.recv_io,
                max,
            )));
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                self.sends, total,
            )));
            drop(Box::from_raw(self.wake_buf));
        }
        if !self.br.is_null() {
            let _ = self.ring.submitter().unregister_buf_ring(BGID);
            let size = nbuf * std::mem::size_of::<types::BufRingEntry>();
            // SAFETY: the buffer ring is unregistered; this is the mapping made in
            // `setup_buf_ring`.
            unsafe { libc::munmap(self.br.cast(), size) };
        }
    }
}

/// Parse a `sockaddr_in`/`sockaddr_in6` from raw bytes (no alignment assumed).
fn sockaddr_from_bytes(b: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(u16::from_ne_bytes([*b.first()?, *b.get(1)?]));
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    if family == libc::AF_INET {
        let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
        Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
    } else if family == libc::AF_INET6 {
        let flow = u32::from_be_bytes(b.get(4..8)?.try_into().ok()?);
        let ip: [u8; 16] = b.get(8..24)?.try_into().ok()?;
        let scope = u32::from_ne_bytes(b.get(24..28)?.try_into().ok()?);
        Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(ip),
            port,
            flow,
            scope,
        )))
    } else {
        None
    }
}

fn sockaddr_from_sin6(s: &libc::sockaddr_in6) -> Option<SocketAddr> {
    let mut b = [0u8; NAME_LEN];
    b[0..2].copy_from_slice(&s.sin6_family.to_ne_bytes());
    b[2..4].copy_from_slice(&s.sin6_port.to_ne_bytes());
    b[4..8].copy_from_slice(&s.sin6_flowinfo.to_ne_bytes());
    b[8..24].copy_from_slice(&s.sin6_addr.s6_addr);
    b[24..28].copy_from_slice(&s.sin6_scope_id.to_ne_bytes());
    sockaddr_from_bytes(&b)
}

/// Write `addr` into `out` (a `sockaddr_in6`-sized area); returns the address length.
fn sockaddr_to_sin6(addr: SocketAddr, out: &mut libc::sockaddr_in6) -> u32 {
    *out = zeroed_sin6();
    match addr {
        SocketAddr::V4(a) => {
            // A sockaddr_in laid over the start of a sockaddr_in6: family, port, then the
            // IPv4 address where sin6_flowinfo sits.
            out.sin6_family = libc::AF_INET as libc::sa_family_t;
            out.sin6_port = a.port().to_be();
            out.sin6_flowinfo = u32::from_ne_bytes(a.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>() as u32
        }
        SocketAddr::V6(a) => {
            out.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            out.sin6_port = a.port().to_be();
            out.sin6_flowinfo = a.flowinfo().to_be();
            out.sin6_addr.s6_addr = a.ip().octets();
            out.sin6_scope_id = a.scope_id();
            NAME_LEN as u32
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trip() {
        for (k, s, b) in [(1u8, 0u32, 0u16), (4, 4095, 1023), (2, u32::MAX, u16::MAX)] {
            assert_eq!(unpack(pack(k, s, b)), (k, s, b));
        }
    }

    #[test]
    fn sockaddr_round_trip() {
        for a in [
            "127.0.0.1:4000".parse::<SocketAddr>().unwrap(),
            "[::1]:5004".parse().unwrap(),
        ] {
            let mut s = zeroed_sin6();
            sockaddr_to_sin6(a, &mut s);
            assert_eq!(sockaddr_from_sin6(&s), Some(a));
        }
        assert_eq!(sockaddr_from_bytes(&[0; 3]), None);
        assert_eq!(sockaddr_from_bytes(&[0; 28]), None);
    }

    #[test]
    fn misuse_through_the_safe_api_is_harmless() {
        if let Err(why) = probe() {
            println!("skipping: {why}");
            return;
        }
        let mut ring = Ring::new(RingConfig {
            max_sockets: 4,
            buffers: 8,
            ..RingConfig::default()
        })
        .unwrap();
        let dest: SocketAddr = "127.0.0.1:9".parse().unwrap();
        ring.remove_socket(u32::MAX);
        assert_eq!(ring.local_addr(4), None);
        ring.send(u32::MAX, 0, 0, 10, dest);
        ring.send(0, 7, 2000, 100, dest);
        ring.release(u16::MAX);
        assert!(ring.buf_mut(0).is_empty(), "buffers not lent read as empty");
        assert!(ring.buf_mut(u16::MAX).is_empty());
        assert!(
            Ring::new(RingConfig {
                buffers: 100,
                ..RingConfig::default()
            })
            .is_err()
        );
        for _ in 0..4 {
            ring.add_socket(UdpSocket::bind("127.0.0.1:0").unwrap())
                .unwrap();
        }
        assert!(
            ring.add_socket(UdpSocket::bind("127.0.0.1:0").unwrap())
                .is_err()
        );
        ring.remove_socket(2);
        ring.remove_socket(2);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut closed = false;
        while !closed {
            assert!(
                std::time::Instant::now() < deadline,
                "socket 2 never closed"
            );
            ring.wait(Duration::from_millis(10), 64).unwrap();
            while let Some(ev) = ring.next_event() {
                closed |= ev == Event::Closed(2);
            }
        }
        assert!(
            ring.add_socket(UdpSocket::bind("127.0.0.1:0").unwrap())
                .is_ok()
        );
        assert_eq!(ring.buffers_in_use(), 0);
    }
}
