//! Shard snapshots: `b"VSASNAP\0"`, format version (u32 LE), then framed records (length +
//! CRC32 + bincode, as in the log): a [`SnapshotHeader`], then `header.items` [`DiskItem`]s.
//! Written to a temporary file, fsynced and renamed into place.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::record::{
    DiskItem, RECORD_HEADER, decode_payload, encode_framed, parse_header, record_header,
};
use super::{DurabilityError, Result, sync_dir};
use crate::store::ItemRecord;

/// First bytes of every snapshot.
pub const MAGIC: &[u8; 8] = b"VSASNAP\0";
/// Format version written (and the only one read).
pub const VERSION: u32 = 2;

/// What a snapshot covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// Category of the shard.
    pub category: String,
    /// Shard number.
    pub shard: u32,
    /// Every write with a sequence number ≤ this is in the snapshot.
    pub seq: u64,
    /// Items that follow.
    pub items: u64,
}

/// A decoded snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Its header.
    pub header: SnapshotHeader,
    /// Its items.
    pub items: Vec<ItemRecord>,
}

/// Writes a snapshot of `items` to `path` (atomically); returns its size in bytes.
pub fn write(path: &Path, header: &SnapshotHeader, items: &[Arc<ItemRecord>]) -> Result<u64> {
    write_limited(path, header, items, 0)
}

/// Like [`write`], at most `mb_s` MB/s (0: unlimited).
///
/// Made to run beside searches: items are encoded by reference (no copy of an item), and the
/// file is written back to the disk every [`WRITEBACK_BYTES`] as it grows, by this
/// (low-priority) thread, so neither a burst of dirty pages flushed by the kernel's writeback
/// threads nor a long final fsync competes with the searches.
pub fn write_limited(
    path: &Path,
    header: &SnapshotHeader,
    items: &[Arc<ItemRecord>],
    mb_s: u64,
) -> Result<u64> {
    let started = std::time::Instant::now();
    let tmp = path.with_extension("tmp");
    let file = File::create(&tmp).map_err(DurabilityError::io(&tmp))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut size = 0u64;
    let mut put = |w: &mut BufWriter<File>, bytes: &[u8]| -> Result<()> {
        size += bytes.len() as u64;
        w.write_all(bytes).map_err(DurabilityError::io(&tmp))
    };
    put(&mut w, MAGIC)?;
    put(&mut w, &VERSION.to_le_bytes())?;
    put(&mut w, &encode_framed(header)?)?;
    let mut paced = 0u64;
    let mut written = 0u64;
    let mut writeback = Writeback::default();
    let mut embedding = Vec::new();
    for item in items {
        let payload = encode_item(item, &mut embedding)?;
        let head = record_header(&payload)?;
        paced += (head.len() + payload.len()) as u64;
        written += (head.len() + payload.len()) as u64;
        put(&mut w, &head)?;
        put(&mut w, &payload)?;
        if paced >= 1 << 20 {
            paced = 0;
            writeback.advance(w.get_ref());
            if mb_s > 0 {
                let due = written as f64 / (mb_s as f64 * 1e6);
                let now = started.elapsed().as_secs_f64();
                if due > now {
                    std::thread::sleep(std::time::Duration::from_secs_f64(due - now));
                }
            }
        }
    }
    let file = w
        .into_inner()
        .map_err(|e| DurabilityError::io(&tmp)(e.into_error()))?;
    file.sync_all().map_err(DurabilityError::io(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(DurabilityError::io(path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(size)
}

/// Bytes a snapshot writer lets accumulate before it writes them back itself.
pub const WRITEBACK_BYTES: u64 = 8 << 20;

/// The bincode payload of one item, the same bytes as `encode_body(&DiskItem::from(item))`
/// without copying the item; `embedding` is a reused buffer for its f16 bytes.
fn encode_item(item: &ItemRecord, embedding: &mut Vec<u8>) -> Result<Vec<u8>> {
    #[derive(Serialize)]
    struct DiskItemRef<'a> {
        id: &'a str,
        category: &'a str,
        attributes: &'a [(String, String)],
        metadata: &'a [(String, String)],
        embedding: &'a [u8],
        colour: &'a [f32],
        quality: &'a [(String, f32)],
    }
    embedding.clear();
    embedding.extend(item.embedding.iter().flat_map(|v| v.to_le_bytes()));
    vsa_protocol::frame::encode_body(&DiskItemRef {
        id: &item.id,
        category: &item.category,
        attributes: &item.attributes,
        metadata: &item.metadata,
        embedding,
        colour: &item.colour,
        quality: &item.quality,
    })
    .map_err(|e| DurabilityError::Encode(e.to_string()))
}

/// Incremental write-back of a file being written (Linux: `sync_file_range`; elsewhere
/// nothing, and the final fsync does it all). Best effort: the final `sync_all` is what makes
/// the snapshot durable. The written pages stay cached (clean), so a restart soon after reads
/// the newest snapshot from memory.
#[derive(Default)]
struct Writeback {
    /// Bytes handed to the disk so far (the start of the next range).
    started: u64,
    /// Bytes known to be on the disk.
    done: u64,
}

impl Writeback {
    /// Starts writing back the new whole ranges of what reached the file, and waits for the
    /// range started before them, so at most two ranges are dirty at a time.
    fn advance(&mut self, mut file: &File) {
        use std::io::Seek;
        let Ok(written) = file.stream_position() else {
            return;
        };
        if written < self.started + WRITEBACK_BYTES {
            return;
        }
        let end = written - written % WRITEBACK_BYTES;
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let fd = file.as_raw_fd();
            // SAFETY: plain integer arguments on a descriptor this function borrows.
            unsafe {
                if self.started > self.done {
                    libc::sync_file_range(
                        fd,
                        self.done as libc::off64_t,
                        (self.started - self.done) as libc::off64_t,
                        libc::SYNC_FILE_RANGE_WAIT_BEFORE
                            | libc::SYNC_FILE_RANGE_WRITE
                            | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                    );
                    self.done = self.started;
                }
                libc::sync_file_range(
                    fd,
                    self.started as libc::off64_t,
                    (end - self.started) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
        }
        self.started = end;
    }
}

/// Reads and verifies a snapshot file.
pub fn read(path: &Path) -> Result<Snapshot> {
    let file = File::open(path).map_err(DurabilityError::io(path))?;
    let size = file.metadata().map_err(DurabilityError::io(path))?.len();
    decode_from(BufReader::with_capacity(1 << 20, file), size).map_err(|e| match e {
        DurabilityError::Corrupt(m) => DurabilityError::Corrupt(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// Decodes a snapshot held in memory (never panics; allocation bounded by the input size).
pub fn decode(bytes: &[u8]) -> Result<Snapshot> {
    decode_from(bytes, bytes.len() as u64)
}

fn decode_from(mut r: impl Read, size: u64) -> Result<Snapshot> {
    let mut magic = [0u8; 12];
    read_exact(&mut r, &mut magic, "header")?;
    if &magic[..8] != MAGIC {
        return Err(DurabilityError::Corrupt(
            "not a vsa snapshot (bad magic)".into(),
        ));
    }
    let version = u32::from_le_bytes([magic[8], magic[9], magic[10], magic[11]]);
    if version != VERSION {
        return Err(DurabilityError::Corrupt(format!(
            "snapshot format version {version}; this build reads version {VERSION}"
        )));
    }
    let mut remaining = size.saturating_sub(12);
    let header: SnapshotHeader = read_framed(&mut r, &mut remaining, "snapshot header")?;
    // The count is untrusted: every item takes at least a record header.
    let bound = remaining / RECORD_HEADER as u64;
    if header.items > bound {
        return Err(DurabilityError::Corrupt(format!(
            "snapshot claims {} items but has room for at most {bound}",
            header.items
        )));
    }
    let mut items = Vec::with_capacity(header.items as usize);
    for i in 0..header.items {
        let item: DiskItem = read_framed(&mut r, &mut remaining, &format!("item {i}"))?;
        items.push(ItemRecord::from(item));
    }
    if remaining != 0 {
        return Err(DurabilityError::Corrupt(format!(
            "{remaining} unexpected bytes after the last item"
        )));
    }
    Ok(Snapshot { header, items })
}

fn read_framed<T: serde::de::DeserializeOwned>(
    r: &mut impl Read,
    remaining: &mut u64,
    what: &str,
) -> Result<T> {
    let mut h = [0u8; RECORD_HEADER];
    read_exact(r, &mut h, what)?;
    let (len, crc) = parse_header(&h)
        .map_err(|e| DurabilityError::Corrupt(format!("{what}: {e}")))?
        .ok_or_else(|| DurabilityError::Corrupt(format!("{what}: truncated")))?;
    let total = (RECORD_HEADER + len) as u64;
    if total > *remaining {
        return Err(DurabilityError::Corrupt(format!("{what}: truncated")));
    }
    *remaining -= total;
    let mut payload = vec![0u8; len];
    read_exact(r, &mut payload, what)?;
    decode_payload(&payload, crc).map_err(|e| DurabilityError::Corrupt(format!("{what}: {e}")))
}

fn read_exact(r: &mut impl Read, buf: &mut [u8], what: &str) -> Result<()> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            DurabilityError::Corrupt(format!("{what}: truncated"))
        } else {
            DurabilityError::Corrupt(format!("{what}: {e}"))
        }
    })
}
