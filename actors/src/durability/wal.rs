//! The write-ahead log: segment files written by one thread with group commit, and replay.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use tokio::sync::oneshot;

use super::record::{RECORD_HEADER, WalRecord, decode_payload, parse_header};
use super::{DurabilityError, FsyncPolicy, Result, StorageConfig, sync_dir};

/// The answer to an append: `Ok` once the record is in the log under the fsync policy.
pub type AppendAck = oneshot::Receiver<std::result::Result<(), String>>;

enum Command {
    Append {
        seq: u64,
        bytes: Vec<u8>,
        ack: oneshot::Sender<std::result::Result<(), String>>,
    },
    /// Answered once every earlier append is written to the file (not necessarily synced).
    Barrier(oneshot::Sender<()>),
    /// Close the current segment and start the next; answers the new segment's first seq.
    Rotate(oneshot::Sender<std::result::Result<u64, String>>),
    /// Delete closed segments that only hold records with seq ≤ this.
    TruncateThrough(u64),
}

/// Counters of the log writer.
#[derive(Debug, Default)]
pub struct WalStats {
    /// Records appended.
    pub records: AtomicU64,
    /// Bytes appended.
    pub bytes: AtomicU64,
    /// fsync calls.
    pub syncs: AtomicU64,
    /// Total microseconds spent in fsync.
    pub sync_micros: AtomicU64,
    /// Records covered by the group commits (records / group commits = mean group size).
    pub group_commits: AtomicU64,
    /// Append failures.
    pub errors: AtomicU64,
}

/// Handle of the log writer thread. Dropping it stops the thread after it has written and
/// synced everything queued.
#[derive(Debug)]
pub struct WalWriter {
    tx: Option<Sender<Command>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<WalStats>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Append { seq, .. } => write!(f, "Append({seq})"),
            Command::Barrier(_) => write!(f, "Barrier"),
            Command::Rotate(_) => write!(f, "Rotate"),
            Command::TruncateThrough(s) => write!(f, "TruncateThrough({s})"),
        }
    }
}

/// The folder of the log segments.
pub fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("wal")
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("wal-{first_seq:020}.log"))
}

/// The segments of `dir`, oldest first, with the first sequence number of each.
pub fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(DurabilityError::io(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(DurabilityError::io(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = name
            .strip_prefix("wal-")
            .and_then(|s| s.strip_suffix(".log"))
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

impl WalWriter {
    /// Starts the writer; the first segment starts at `next_seq`.
    pub fn start(data_dir: &Path, config: &StorageConfig, next_seq: u64) -> Result<WalWriter> {
        let dir = wal_dir(data_dir);
        std::fs::create_dir_all(&dir).map_err(DurabilityError::io(&dir))?;
        let mut segments = segments(&dir)?;
        let path = segment_path(&dir, next_seq);
        let file = open_segment(&path)?;
        if segments.last().map(|(s, _)| *s) != Some(next_seq) {
            segments.push((next_seq, path.clone()));
        }
        sync_dir(&dir)?;
        let (tx, rx) = crossbeam_channel::bounded(config.queue.max(1));
        let stats = Arc::new(WalStats::default());
        let mut state = WriterState {
            dir,
            file,
            path,
            segment_bytes: 0,
            segments,
            policy: config.fsync,
            interval: Duration::from_millis(config.fsync_interval_ms.max(1)),
            max_segment: config.segment_bytes.max(4096),
            group_max: config.group_commit_max.max(1),
            last_seq: next_seq.saturating_sub(1),
            dirty: false,
            last_sync: Instant::now(),
            stats: stats.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("vsa-wal".into())
            .spawn(move || state.run(rx))
            .map_err(|e| DurabilityError::Unavailable(format!("spawning the log writer: {e}")))?;
        Ok(WalWriter {
            tx: Some(tx),
            thread: Some(thread),
            stats,
        })
    }

    /// Queues a framed record; the receiver answers when it is durable under the policy.
    /// A full queue is an error at once (the caller answers `busy`).
    pub fn append(&self, seq: u64, bytes: Vec<u8>) -> Result<AppendAck> {
        let (ack, rx) = oneshot::channel();
        self.send(Command::Append { seq, bytes, ack })?;
        Ok(rx)
    }

    /// Answers once every earlier append has been written to the file.
    pub fn barrier(&self) -> Result<oneshot::Receiver<()>> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Barrier(tx))?;
        Ok(rx)
    }

    /// Closes the segment and starts the next; answers its first seq.
    pub fn rotate(&self) -> Result<oneshot::Receiver<std::result::Result<u64, String>>> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Rotate(tx))?;
        Ok(rx)
    }

    /// Deletes the closed segments holding only records ≤ `seq`.
    pub fn truncate_through(&self, seq: u64) -> Result<()> {
        self.send(Command::TruncateThrough(seq))
    }

    /// Counters.
    pub fn stats(&self) -> &Arc<WalStats> {
        &self.stats
    }

    fn send(&self, c: Command) -> Result<()> {
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| DurabilityError::Unavailable("the log writer is stopped".into()))?;
        match tx.try_send(c) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                Err(DurabilityError::Unavailable("the log queue is full".into()))
            }
            Err(TrySendError::Disconnected(_)) => Err(DurabilityError::Unavailable(
                "the log writer has stopped".into(),
            )),
        }
    }
}

impl Drop for WalWriter {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn open_segment(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(DurabilityError::io(path))
}

struct WriterState {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    segment_bytes: u64,
    segments: Vec<(u64, PathBuf)>,
    policy: FsyncPolicy,
    interval: Duration,
    max_segment: u64,
    group_max: usize,
    last_seq: u64,
    dirty: bool,
    last_sync: Instant,
    stats: Arc<WalStats>,
}

type Pending = Vec<oneshot::Sender<std::result::Result<(), String>>>;

impl WriterState {
    fn run(&mut self, rx: Receiver<Command>) {
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
        let mut pending: Pending = Vec::new();
        loop {
            let first = if self.policy == FsyncPolicy::Interval && self.dirty {
                let wait = self.interval.saturating_sub(self.last_sync.elapsed());
                match rx.recv_timeout(wait) {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(c) => Some(c),
                    Err(_) => break,
                }
            };
            let mut batch: Vec<Command> = first.into_iter().collect();
            while batch.len() < self.group_max {
                match rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            for command in batch {
                match command {
                    Command::Append { seq, bytes, ack } => {
                        buf.extend_from_slice(&bytes);
                        self.last_seq = self.last_seq.max(seq);
                        pending.push(ack);
                    }
                    Command::Barrier(done) => {
                        self.commit(&mut buf, &mut pending, false);
                        let _ = done.send(());
                    }
                    Command::Rotate(done) => {
                        self.commit(&mut buf, &mut pending, false);
                        let _ = done.send(self.rotate().map_err(|e| e.to_string()));
                    }
                    Command::TruncateThrough(seq) => {
                        self.commit(&mut buf, &mut pending, false);
                        self.truncate_through(seq);
                    }
                }
            }
            self.commit(&mut buf, &mut pending, false);
            if self.dirty
                && self.policy == FsyncPolicy::Interval
                && self.last_sync.elapsed() >= self.interval
            {
                let _ = self.sync();
            }
            if self.segment_bytes >= self.max_segment
                && let Err(e) = self.rotate()
            {
                tracing::error!(error = %e, "log segment rotation failed");
            }
        }
        self.commit(&mut buf, &mut pending, true);
    }

    /// Writes the buffered records, syncs under the policy, answers their appenders.
    fn commit(&mut self, buf: &mut Vec<u8>, pending: &mut Pending, final_sync: bool) {
        if !buf.is_empty() {
            let result = self
                .file
                .write_all(buf)
                .map_err(|e| format!("{}: {e}", self.path.display()))
                .and_then(|()| {
                    self.segment_bytes += buf.len() as u64;
                    self.dirty = true;
                    if self.policy == FsyncPolicy::Always {
                        self.sync().map_err(|e| e.to_string())
                    } else {
                        Ok(())
                    }
                });
            self.stats
                .records
                .fetch_add(pending.len() as u64, Ordering::Relaxed);
            self.stats
                .bytes
                .fetch_add(buf.len() as u64, Ordering::Relaxed);
            self.stats.group_commits.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = &result {
                self.stats
                    .errors
                    .fetch_add(pending.len() as u64, Ordering::Relaxed);
                tracing::error!(error = %e, "write-ahead log append failed");
                // A torn record would hide everything after it: continue in a new segment.
                if let Err(e) = self.rotate() {
                    tracing::error!(error = %e, "log segment rotation failed");
                }
            }
            for ack in pending.drain(..) {
                let _ = ack.send(result.clone());
            }
            buf.clear();
        }
        if final_sync && self.dirty {
            let _ = self.sync();
        }
    }

    fn sync(&mut self) -> Result<()> {
        let t = Instant::now();
        self.file
            .sync_data()
            .map_err(DurabilityError::io(&self.path))?;
        self.dirty = false;
        self.last_sync = Instant::now();
        self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        self.stats
            .sync_micros
            .fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn rotate(&mut self) -> Result<u64> {
        if self.dirty {
            self.sync()?;
        }
        let next = self.last_seq + 1;
        if self.segments.last().map(|(s, _)| *s) == Some(next) {
            // Nothing written since the last rotation: keep the (empty) segment.
            return Ok(next);
        }
        let path = segment_path(&self.dir, next);
        self.file = open_segment(&path)?;
        sync_dir(&self.dir)?;
        self.path = path.clone();
        self.segment_bytes = 0;
        self.segments.push((next, path));
        Ok(next)
    }

    fn truncate_through(&mut self, seq: u64) {
        // Segment i holds seqs [first_i, first_{i+1}); it can go when first_{i+1} ≤ seq + 1.
        let mut keep_from = 0;
        for i in 0..self.segments.len().saturating_sub(1) {
            if self.segments[i + 1].0 <= seq + 1 {
                keep_from = i + 1;
            }
        }
        for (_, path) in self.segments.drain(..keep_from) {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete an old log segment");
            }
        }
    }
}

/// Where and why a replay stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment.
    pub segment: PathBuf,
    /// Offset of the first bad byte.
    pub offset: u64,
    /// Bytes from there to the end of that segment.
    pub bytes_skipped: u64,
    /// Later segments that were not replayed.
    pub later_segments: Vec<PathBuf>,
    /// What was wrong.
    pub reason: String,
}

/// What a replay read.
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Records read (including those the callback ignored).
    pub records: u64,
    /// Highest sequence number read.
    pub last_seq: u64,
    /// Set when a torn or corrupt record stopped the replay.
    pub torn: Option<TornTail>,
}

/// Reads every record of the log in `data_dir` in order, calling `f` on each, until the end,
/// the first torn/corrupt record, or `f` returning false.
pub fn replay(data_dir: &Path, mut f: impl FnMut(WalRecord) -> bool) -> Result<ReplayReport> {
    let dir = wal_dir(data_dir);
    let segs = segments(&dir)?;
    let mut report = ReplayReport::default();
    for (i, (_, path)) in segs.iter().enumerate() {
        let file = File::open(path).map_err(DurabilityError::io(path))?;
        let size = file.metadata().map_err(DurabilityError::io(path))?.len();
        let mut reader = BufReader::with_capacity(1 << 20, file);
        match scan_segment(&mut reader, size, &mut report, &mut f)
            .map_err(DurabilityError::io(path))?
        {
            SegmentEnd::Complete => {}
            SegmentEnd::Stopped => return Ok(report),
            SegmentEnd::Torn { offset, reason } => {
                report.torn = Some(TornTail {
                    segment: path.clone(),
                    offset,
                    bytes_skipped: size.saturating_sub(offset),
                    later_segments: segs[i + 1..].iter().map(|(_, p)| p.clone()).collect(),
                    reason,
                });
                return Ok(report);
            }
        }
    }
    Ok(report)
}

/// Where [`scan_segment`] stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentEnd {
    /// Every record up to the end was read.
    Complete,
    /// The callback returned false.
    Stopped,
    /// A torn or corrupt record starts at `offset` (every record before it was read).
    Torn {
        /// Offset of the first bad byte from the start of the segment.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
}

/// Reads the records of one log segment of `size` bytes from `reader` in order, calling `f`
/// on each (and counting it in `report`), until the end, the first torn/corrupt record, or
/// `f` returning false. This is [`replay`]'s reader for one file, public so that the fuzz
/// targets can drive it from memory.
///
/// Never panics on any bytes; a payload buffer is only grown for a record that fits in
/// `size`, so memory is bounded by the segment, whatever its headers declare.
pub fn scan_segment(
    reader: &mut impl Read,
    size: u64,
    report: &mut ReplayReport,
    f: &mut impl FnMut(WalRecord) -> bool,
) -> std::io::Result<SegmentEnd> {
    let mut offset = 0u64;
    let mut header = [0u8; RECORD_HEADER];
    let mut payload = Vec::new();
    loop {
        let got = read_full(reader, &mut header)?;
        if got == 0 {
            return Ok(SegmentEnd::Complete);
        }
        let torn = |reason: String| Ok(SegmentEnd::Torn { offset, reason });
        if got < RECORD_HEADER {
            return torn("torn record header".to_string());
        }
        let (len, crc) = match parse_header(&header) {
            Err(e) => return torn(e.to_string()),
            Ok(None) => return torn("torn record header".to_string()),
            Ok(Some(h)) => h,
        };
        let cut_short = || format!("torn record: {len}-byte payload cut short");
        if offset.saturating_add((RECORD_HEADER + len) as u64) > size {
            return torn(cut_short());
        }
        payload.resize(len, 0);
        if read_full(reader, &mut payload)? < len {
            return torn(cut_short());
        }
        match decode_payload::<WalRecord>(&payload, crc) {
            Ok(record) => {
                report.records += 1;
                report.last_seq = report.last_seq.max(record.seq);
                offset += (RECORD_HEADER + len) as u64;
                if !f(record) {
                    return Ok(SegmentEnd::Stopped);
                }
            }
            Err(e) => return torn(e.to_string()),
        }
    }
}

/// Cuts a torn tail off: the bad bytes (and any later segments) are moved aside to
/// `*.corrupt` files for inspection, the segment is truncated to its valid prefix.
pub fn cut_torn_tail(torn: &TornTail) -> Result<()> {
    let aside = torn
        .segment
        .with_extension(format!("log.corrupt-{}", torn.offset));
    let mut src = File::open(&torn.segment).map_err(DurabilityError::io(&torn.segment))?;
    let mut bytes = Vec::new();
    src.read_to_end(&mut bytes)
        .map_err(DurabilityError::io(&torn.segment))?;
    let start = usize::try_from(torn.offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    std::fs::write(&aside, &bytes[start..]).map_err(DurabilityError::io(&aside))?;
    let f = OpenOptions::new()
        .write(true)
        .open(&torn.segment)
        .map_err(DurabilityError::io(&torn.segment))?;
    f.set_len(torn.offset)
        .and_then(|()| f.sync_all())
        .map_err(DurabilityError::io(&torn.segment))?;
    for later in &torn.later_segments {
        let to = later.with_extension("log.skipped");
        std::fs::rename(later, &to).map_err(DurabilityError::io(later))?;
    }
    if let Some(dir) = torn.segment.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
