//! Clicks the broker could not take (producer queue full, or unacknowledged for too long)
//! wait here, on local disk, until they can be replayed in order. The spill is a series
//! of append-only segment files; its total size is capped, and only beyond the cap is a
//! click dropped (and counted).
//!
//! Record format: `len: u32 LE` (of what follows, without the CRC), `key_len: u32 LE`,
//! key, payload, `crc32: u32 LE` of key_len + key + payload. A torn last record (a crash
//! mid-write) fails its CRC and ends the segment. A write that fails (disk full) is cut
//! off again at once, so no record ever follows a torn one; and the spill keeps
//! `min_free_bytes` free on its file system, dropping (and counting) clicks rather than
//! filling the disk.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A segment is closed and a new one started past this size, so replay can proceed and
/// free disk one segment at a time.
const SEGMENT_BYTES: u64 = 64 << 20;
const RECORD_OVERHEAD: u64 = 12;
/// Free space is asked of the file system again after this many bytes were written.
const FREE_SPACE_RECHECK: u64 = 1 << 20;

pub struct Spill {
    dir: PathBuf,
    max_bytes: u64,
    min_free_bytes: u64,
    /// Bytes in all segment files, including the open one.
    on_disk: AtomicU64,
    writer: Mutex<Writer>,
    /// Replay progress per segment. Ahead of the saved cursor when that could not be
    /// written (disk full), so a segment is never replayed again and again.
    replayed: Mutex<HashMap<PathBuf, u64>>,
}

struct Writer {
    seq: u64,
    file: Option<File>,
    /// Bytes of whole records in the open segment: where a failed write is cut off.
    bytes: u64,
    /// Free space last reported, minus what was written since.
    free: u64,
    written_since_check: u64,
}

/// Why a click could not be spilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The spill reached `SPILL_MAX_BYTES`.
    Cap,
    /// The disk is (nearly) full, or the write failed.
    Disk,
}

impl Dropped {
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::Cap => "spill_cap",
            Dropped::Disk => "disk",
        }
    }
}

/// One spilled click.
pub struct Record {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Spill {
    /// Opens the spill folder; segments left by a previous run are kept for replay.
    /// Clicks are dropped rather than spilled when less than `min_free_bytes` would be
    /// left on the folder's file system.
    pub fn open(dir: &Path, max_bytes: u64, min_free_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut on_disk = 0;
        let mut last_seq = 0;
        for (seq, path) in segments(dir)? {
            on_disk += fs::metadata(&path)?.len();
            last_seq = last_seq.max(seq);
        }
        let free = fs4::available_space(dir)?;
        if free < min_free_bytes {
            tracing::error!(
                dir = %dir.display(),
                free,
                min_free_bytes,
                "the spill's disk is nearly full: clicks the broker cannot take will be dropped"
            );
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
            min_free_bytes,
            on_disk: AtomicU64::new(on_disk),
            writer: Mutex::new(Writer {
                seq: last_seq + 1,
                file: None,
                bytes: 0,
                free,
                written_since_check: 0,
            }),
            replayed: Mutex::default(),
        })
    }

    /// Appends one click, or says why it was dropped.
    pub fn append(&self, key: &[u8], payload: &[u8]) -> Result<(), Dropped> {
        let size = RECORD_OVERHEAD + key.len() as u64 + payload.len() as u64;
        if self.on_disk.load(Ordering::Relaxed) + size > self.max_bytes {
            return Err(Dropped::Cap);
        }
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if !self.room_for(&mut writer, size) {
            return Err(Dropped::Disk);
        }
        if let Err(err) = self.write_record(&mut writer, key, payload) {
            tracing::error!(%err, dir = %self.dir.display(), "cannot write to the spill");
            self.cut_off(&mut writer);
            return Err(Dropped::Disk);
        }
        writer.bytes += size;
        writer.free = writer.free.saturating_sub(size);
        writer.written_since_check += size;
        self.on_disk.fetch_add(size, Ordering::Relaxed);
        if writer.bytes >= SEGMENT_BYTES {
            let _ = close(&mut writer);
        }
        Ok(())
    }

    /// Whether `size` more bytes leave `min_free_bytes` free (asking the file system
    /// again now and then, and whenever the estimate says no).
    fn room_for(&self, writer: &mut Writer, size: u64) -> bool {
        let enough = |free: u64| free >= self.min_free_bytes.saturating_add(size);
        if enough(writer.free) && writer.written_since_check < FREE_SPACE_RECHECK {
            return true;
        }
        writer.written_since_check = 0;
        writer.free = fs4::available_space(&self.dir).unwrap_or(0);
        enough(writer.free)
    }

    fn write_record(&self, writer: &mut Writer, key: &[u8], payload: &[u8]) -> io::Result<()> {
        if writer.file.is_none() {
            let path = segment_path(&self.dir, writer.seq);
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            writer.file = Some(file);
        }
        let key_len = (key.len() as u32).to_le_bytes();
        let len = (4 + key.len() + payload.len()) as u32;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&key_len);
        crc.update(key);
        crc.update(payload);
        // One write per record: a failure leaves at most this record torn, at the end.
        let mut record = Vec::with_capacity(RECORD_OVERHEAD as usize + key.len() + payload.len());
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&key_len);
        record.extend_from_slice(key);
        record.extend_from_slice(payload);
        record.extend_from_slice(&crc.finalize().to_le_bytes());
        writer
            .file
            .as_mut()
            .expect("opened above")
            .write_all(&record)
    }

    /// After a failed write: the open segment is cut back to its last whole record, so
    /// later records never sit behind a torn one. If even that fails, the segment is
    /// closed as it is (its torn tail ends its replay, and nothing follows it).
    fn cut_off(&self, writer: &mut Writer) {
        let good = writer.bytes;
        let cut = writer.file.as_ref().map(|file| file.set_len(good));
        if !matches!(cut, Some(Ok(()))) {
            writer.file = None;
            writer.seq += 1;
            writer.bytes = 0;
        }
    }

    /// Syncs the open segment to disk.
    pub fn flush(&self) -> io::Result<()> {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = writer.file.as_ref() {
            file.sync_data()?;
        }
        Ok(())
    }

    /// Free space on the spill's file system.
    pub fn free_bytes(&self) -> u64 {
        fs4::available_space(&self.dir).unwrap_or(0)
    }

    /// How many records of `segment` were already replayed.
    pub fn replayed(&self, segment: &Path) -> u64 {
        let in_memory = self
            .replayed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(segment)
            .copied()
            .unwrap_or(0);
        in_memory.max(read_cursor(segment))
    }

    /// Records that the first `count` records of `segment` reached the broker: in memory
    /// at once, on disk if it can be written (else a restart repeats them).
    pub fn mark_replayed(&self, segment: &Path, count: u64) -> io::Result<()> {
        self.replayed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(segment.to_path_buf(), count);
        write_cursor(segment, count)
    }

    /// Whether anything waits for replay.
    pub fn is_empty(&self) -> bool {
        self.on_disk.load(Ordering::Relaxed) == 0
    }

    pub fn bytes(&self) -> u64 {
        self.on_disk.load(Ordering::Relaxed)
    }

    /// Closes the open segment and returns every closed segment, oldest first. New
    /// spills go to a fresh segment, so the returned ones can be replayed and removed.
    pub fn closed_segments(&self) -> io::Result<Vec<PathBuf>> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        close(&mut writer)?;
        let open = segment_path(&self.dir, writer.seq);
        Ok(segments(&self.dir)?
            .into_iter()
            .map(|(_, path)| path)
            .filter(|path| *path != open)
            .collect())
    }

    /// Deletes a replayed segment and its cursor.
    pub fn remove(&self, segment: &Path) -> io::Result<()> {
        let size = fs::metadata(segment).map(|m| m.len()).unwrap_or(0);
        fs::remove_file(segment)?;
        let _ = fs::remove_file(cursor_path(segment));
        self.replayed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(segment);
        self.on_disk
            .fetch_sub(size.min(self.bytes()), Ordering::Relaxed);
        Ok(())
    }
}

fn close(writer: &mut Writer) -> io::Result<()> {
    if let Some(file) = writer.file.take() {
        writer.seq += 1;
        writer.bytes = 0;
        file.sync_data()?;
    }
    Ok(())
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("spill-{seq:020}.log"))
}

fn cursor_path(segment: &Path) -> PathBuf {
    segment.with_extension("cursor")
}

fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let seq = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("spill-"))
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(seq) = seq {
            out.push((seq, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads a segment's records in order, skipping the `skip` first ones (already
/// replayed, per its cursor). Stops at the first torn or corrupt record.
pub fn read_segment(segment: &Path, skip: u64) -> io::Result<Vec<Record>> {
    let mut reader = BufReader::new(File::open(segment)?);
    let mut records = Vec::new();
    let mut index = 0u64;
    loop {
        let mut len = [0u8; 4];
        match reader.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let len = u32::from_le_bytes(len) as usize;
        let mut body = vec![0u8; len];
        let mut crc = [0u8; 4];
        if len < 4 || reader.read_exact(&mut body).is_err() || reader.read_exact(&mut crc).is_err()
        {
            tracing::warn!(segment = %segment.display(), "torn record at the end of a spill segment");
            break;
        }
        if crc32fast::hash(&body) != u32::from_le_bytes(crc) {
            tracing::warn!(segment = %segment.display(), record = index, "corrupt spill record; stopping this segment");
            break;
        }
        let key_len = u32::from_le_bytes(body[..4].try_into().expect("4 bytes")) as usize;
        if 4 + key_len > body.len() {
            break;
        }
        if index >= skip {
            let payload = body.split_off(4 + key_len);
            body.drain(..4);
            records.push(Record { key: body, payload });
        }
        index += 1;
    }
    Ok(records)
}

fn read_cursor(segment: &Path) -> u64 {
    fs::read_to_string(cursor_path(segment))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn write_cursor(segment: &Path, replayed: u64) -> io::Result<()> {
    let path = cursor_path(segment);
    let tmp = path.with_extension("cursor.tmp");
    fs::write(&tmp, replayed.to_string())?;
    fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("reftrack-spill-{name}-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn records_come_back_in_order_across_segments_and_restarts() {
        let dir = temp_dir("order");
        let spill = Spill::open(&dir, 1 << 20, 0).unwrap();
        for i in 0..10 {
            assert!(spill.append(b"K", format!("p{i}").as_bytes()).is_ok());
        }
        let first = spill.closed_segments().unwrap();
        spill.append(b"K", b"p10").unwrap();
        spill.flush().unwrap();
        drop(spill);

        let reopened = Spill::open(&dir, 1 << 20, 0).unwrap();
        assert!(!reopened.is_empty());
        let segments = reopened.closed_segments().unwrap();
        assert_eq!(segments.len(), 2);
        assert_eq!(segments[0], first[0]);
        let payloads: Vec<String> = segments
            .iter()
            .flat_map(|s| read_segment(s, 0).unwrap())
            .map(|r| String::from_utf8(r.payload).unwrap())
            .collect();
        assert_eq!(
            payloads,
            (0..=10).map(|i| format!("p{i}")).collect::<Vec<_>>()
        );

        reopened.mark_replayed(&segments[0], 7).unwrap();
        assert_eq!(
            Spill::open(&dir, 1 << 20, 0)
                .unwrap()
                .replayed(&segments[0]),
            7
        );
        assert_eq!(read_segment(&segments[0], 7).unwrap().len(), 3);
        for s in &segments {
            reopened.remove(s).unwrap();
        }
        assert!(reopened.is_empty());
    }

    #[test]
    fn the_cap_drops_instead_of_growing_and_torn_tails_are_ignored() {
        let dir = temp_dir("cap");
        let spill = Spill::open(&dir, 100, 0).unwrap();
        assert!(spill.append(b"K", &[1; 40]).is_ok());
        assert_eq!(
            spill.append(b"K", &[2; 60]),
            Err(Dropped::Cap),
            "over the cap"
        );
        let segment = spill.closed_segments().unwrap().remove(0);
        let mut bytes = fs::read(&segment).unwrap();
        bytes.extend_from_slice(&[9, 0, 0, 0, 1]);
        fs::write(&segment, bytes).unwrap();
        assert_eq!(read_segment(&segment, 0).unwrap().len(), 1);
    }

    /// A tmpfs of its own, so that the disk really fills up (the suite runs as root).
    struct TinyDisk(PathBuf);

    impl TinyDisk {
        fn mount(bytes: u64) -> Self {
            let dir = temp_dir("tmpfs");
            let status = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
                .arg(&dir)
                .status()
                .expect("run mount");
            assert!(status.success(), "mount a tmpfs at {}", dir.display());
            Self(dir)
        }
    }

    impl Drop for TinyDisk {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_full_disk_drops_and_counts_but_never_tears_a_record_or_stalls_the_cursor() {
        let disk = TinyDisk::mount(256 << 10);
        let filler = disk.0.join("filler");
        fs::write(&filler, vec![0u8; 64 << 10]).unwrap();
        let spill = Spill::open(&disk.0, u64::MAX, 0).unwrap();
        // Payloads of odd sizes, so that the disk runs out in the middle of a record.
        let payload = |i: usize| format!("{i:0>width$}", width = 50 + i % 97).into_bytes();
        let mut kept = Vec::new();
        let mut fill = |from: usize, to: usize| {
            let mut dropped = 0;
            for i in from..to {
                match spill.append(b"K", &payload(i)) {
                    Ok(()) => kept.push(payload(i)),
                    Err(reason) => {
                        assert_eq!(reason, Dropped::Disk);
                        dropped += 1;
                    }
                }
            }
            dropped
        };
        assert!(fill(0, 5_000) > 0, "the disk filled up");
        // Space comes back (something else on the disk is deleted): spilling goes on in
        // the same segment, and what follows the failed writes is read back too.
        fs::remove_file(&filler).unwrap();
        assert_eq!(fill(5_000, 5_100), 0);
        let segments = spill.closed_segments().unwrap();
        assert_eq!(segments.len(), 1);
        let read: Vec<Vec<u8>> = read_segment(&segments[0], 0)
            .unwrap()
            .into_iter()
            .map(|r| r.payload)
            .collect();
        assert_eq!(read.len(), kept.len(), "every click accepted is read back");
        assert_eq!(read, kept, "in order");

        // The disk full again: the cursor cannot be saved, yet replay moves on.
        let _ = fs::write(&filler, vec![0u8; 256 << 10]);
        assert!(
            spill.mark_replayed(&segments[0], 3).is_err(),
            "no room for the cursor"
        );
        assert_eq!(spill.replayed(&segments[0]), 3);
    }

    #[test]
    fn the_minimum_free_space_is_kept() {
        let disk = TinyDisk::mount(256 << 10);
        let spill = Spill::open(&disk.0, u64::MAX, 128 << 10).unwrap();
        let mut written = 0u64;
        while spill.append(b"K", &[7; 100]).is_ok() {
            written += 100 + 1 + RECORD_OVERHEAD;
        }
        assert_eq!(spill.append(b"K", &[7; 100]), Err(Dropped::Disk));
        assert!(
            written < 128 << 10,
            "stopped before the reserve: {written} bytes"
        );
        assert!(spill.free_bytes() >= 100 << 10, "the reserve is left");
    }
}
