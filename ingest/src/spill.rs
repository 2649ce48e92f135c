//! Clicks the broker could not take (producer queue full, or unacknowledged for too long)
//! wait here, on local disk, until they can be replayed in order. The spill is a series
//! of append-only segment files; its total size is capped, and only beyond the cap is a
//! click dropped (and counted).
//!
//! Record format: `len: u32 LE` (of what follows, without the CRC), `key_len: u32 LE`,
//! key, payload, `crc32: u32 LE` of key_len + key + payload. A torn last record (a crash
//! mid-write) fails its CRC and ends the segment.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A segment is closed and a new one started past this size, so replay can proceed and
/// free disk one segment at a time.
const SEGMENT_BYTES: u64 = 64 << 20;
const RECORD_OVERHEAD: u64 = 12;

pub struct Spill {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes in all segment files, including the open one.
    on_disk: AtomicU64,
    writer: Mutex<Writer>,
}

struct Writer {
    seq: u64,
    file: Option<BufWriter<File>>,
    bytes: u64,
}

/// One spilled click.
pub struct Record {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Spill {
    /// Opens the spill folder; segments left by a previous run are kept for replay.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut on_disk = 0;
        let mut last_seq = 0;
        for (seq, path) in segments(dir)? {
            on_disk += fs::metadata(&path)?.len();
            last_seq = last_seq.max(seq);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes,
            on_disk: AtomicU64::new(on_disk),
            writer: Mutex::new(Writer {
                seq: last_seq + 1,
                file: None,
                bytes: 0,
            }),
        })
    }

    /// Appends one click. Returns `false` when the cap is reached and it was dropped.
    pub fn append(&self, key: &[u8], payload: &[u8]) -> bool {
        let size = RECORD_OVERHEAD + key.len() as u64 + payload.len() as u64;
        if self.on_disk.load(Ordering::Relaxed) + size > self.max_bytes {
            return false;
        }
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        match self.write_record(&mut writer, key, payload) {
            Ok(()) => {
                writer.bytes += size;
                self.on_disk.fetch_add(size, Ordering::Relaxed);
                if writer.bytes >= SEGMENT_BYTES {
                    let _ = close(&mut writer);
                }
                true
            }
            Err(err) => {
                tracing::error!(%err, dir = %self.dir.display(), "cannot write to the spill");
                false
            }
        }
    }

    fn write_record(&self, writer: &mut Writer, key: &[u8], payload: &[u8]) -> io::Result<()> {
        if writer.file.is_none() {
            let path = segment_path(&self.dir, writer.seq);
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            writer.file = Some(BufWriter::with_capacity(256 << 10, file));
        }
        let file = writer.file.as_mut().expect("opened above");
        let key_len = (key.len() as u32).to_le_bytes();
        let len = (4 + key.len() + payload.len()) as u32;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&key_len);
        crc.update(key);
        crc.update(payload);
        file.write_all(&len.to_le_bytes())?;
        file.write_all(&key_len)?;
        file.write_all(key)?;
        file.write_all(payload)?;
        file.write_all(&crc.finalize().to_le_bytes())
    }

    /// Pushes buffered records to the operating system and syncs them to disk.
    pub fn flush(&self) -> io::Result<()> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = writer.file.as_mut() {
            file.flush()?;
            file.get_ref().sync_data()?;
        }
        Ok(())
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
        self.on_disk
            .fetch_sub(size.min(self.bytes()), Ordering::Relaxed);
        Ok(())
    }
}

fn close(writer: &mut Writer) -> io::Result<()> {
    if let Some(mut file) = writer.file.take() {
        file.flush()?;
        file.get_ref().sync_data()?;
        writer.seq += 1;
        writer.bytes = 0;
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

/// How many records of `segment` were already replayed.
pub fn read_cursor(segment: &Path) -> u64 {
    fs::read_to_string(cursor_path(segment))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Records that the first `replayed` records of `segment` reached the broker.
pub fn write_cursor(segment: &Path, replayed: u64) -> io::Result<()> {
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
        let spill = Spill::open(&dir, 1 << 20).unwrap();
        for i in 0..10 {
            assert!(spill.append(b"K", format!("p{i}").as_bytes()));
        }
        let first = spill.closed_segments().unwrap();
        spill.append(b"K", b"p10");
        spill.flush().unwrap();
        drop(spill);

        let reopened = Spill::open(&dir, 1 << 20).unwrap();
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

        write_cursor(&segments[0], 7).unwrap();
        assert_eq!(read_cursor(&segments[0]), 7);
        assert_eq!(read_segment(&segments[0], 7).unwrap().len(), 3);
        for s in &segments {
            reopened.remove(s).unwrap();
        }
        assert!(reopened.is_empty());
    }

    #[test]
    fn the_cap_drops_instead_of_growing_and_torn_tails_are_ignored() {
        let dir = temp_dir("cap");
        let spill = Spill::open(&dir, 100).unwrap();
        assert!(spill.append(b"K", &[1; 40]));
        assert!(!spill.append(b"K", &[2; 60]), "over the cap");
        let segment = spill.closed_segments().unwrap().remove(0);
        let mut bytes = fs::read(&segment).unwrap();
        bytes.extend_from_slice(&[9, 0, 0, 0, 1]);
        fs::write(&segment, bytes).unwrap();
        assert_eq!(read_segment(&segment, 0).unwrap().len(), 1);
    }
}
