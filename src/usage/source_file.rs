//! Usage from exported files: CSV with a header row, JSON Lines (one JSON object per line), a
//! JSON array, or Parquet ([`super::source_parquet`]), with the fields of the Vendor API
//! (`subscription_id`, `item_mpn`, `quantity`, `start_time`, `end_time`, optional `record_id`,
//! `note`, `category`).
//!
//! The format follows the extension (`.csv`; `.jsonl`, `.ndjson`, `.json`; `.parquet`), or the
//! first bytes when the extension says nothing. The path may name the month (`{period}`). The
//! file is read on a blocking thread and handed over in batches; the text formats read from any
//! [`Read`], so that a file behind a URL ([`super::source_url`]) streams through the same code.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use futures_util::stream;
use tokio::sync::mpsc;

use super::record::{
    FIELDS, Position, REQUIRED_FIELDS, RawRecord, Rejection, SourceItem, TextFieldsRef,
};
use super::source::{Batches, SourceError, UsageSource, fill_in, is_template};
use connect_client::month::Month;

/// Items sent at a time.
pub(crate) const BATCH: usize = 4096;

/// The file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Csv,
    JsonLines,
    /// One JSON array of records (a `.json` file that starts with `[`).
    JsonArray,
    Parquet,
}

impl FileFormat {
    /// The format an extension names, if any (`csv`, `jsonl`/`ndjson`, `parquet`; `json` is
    /// JSON Lines or an array, which only the first bytes tell).
    pub fn from_extension(ext: &str) -> Option<FileFormat> {
        match ext.to_ascii_lowercase().as_str() {
            "csv" => Some(FileFormat::Csv),
            "jsonl" | "ndjson" => Some(FileFormat::JsonLines),
            "parquet" => Some(FileFormat::Parquet),
            _ => None,
        }
    }

    /// The format the first bytes of a file show: Parquet's magic number, `[` for a JSON array,
    /// `{` for JSON Lines, else CSV.
    pub fn sniff(head: &[u8]) -> FileFormat {
        if head.starts_with(b"PAR1") {
            return FileFormat::Parquet;
        }
        let first = head
            .iter()
            .find(|b| !b.is_ascii_whitespace() && **b != 0xEF && **b != 0xBB && **b != 0xBF);
        match first {
            Some(b'[') => FileFormat::JsonArray,
            Some(b'{') => FileFormat::JsonLines,
            _ => FileFormat::Csv,
        }
    }
}

/// A usage export file, or a path naming one each month.
#[derive(Debug, Clone)]
pub struct FileSource {
    /// The path as configured, perhaps with `{period}` in it.
    path: PathBuf,
}

impl FileSource {
    /// A path without placeholders must name a file now; one with them is checked each month.
    pub fn new(path: PathBuf) -> Result<FileSource, SourceError> {
        let this = FileSource { path };
        if !this.is_template() {
            this.existing(&this.path)?;
        }
        Ok(this)
    }

    fn is_template(&self) -> bool {
        is_template(&self.path.to_string_lossy())
    }

    /// The month's file.
    pub fn path_for(&self, period: Month) -> PathBuf {
        if self.is_template() {
            PathBuf::from(fill_in(&self.path.to_string_lossy(), period))
        } else {
            self.path.clone()
        }
    }

    fn existing(&self, path: &Path) -> Result<(), SourceError> {
        if path.is_file() {
            return Ok(());
        }
        let reason = if path.is_dir() {
            "a directory, not a file: name the export file itself (or the month's, with {period})"
                .to_owned()
        } else if self.is_template() {
            format!(
                "no such file (USAGE_SOURCE is {}: put the month's export there)",
                self.path.display()
            )
        } else {
            "no such file".into()
        };
        Err(file_error(path, reason))
    }

    /// The format of `path` by extension, else by its first bytes.
    pub fn format(path: &Path) -> Result<FileFormat, SourceError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        match FileFormat::from_extension(ext) {
            Some(FileFormat::Csv) => return Ok(FileFormat::Csv),
            Some(FileFormat::Parquet) => return Ok(FileFormat::Parquet),
            _ => {}
        }
        let mut head = [0u8; 512];
        let n = File::open(path)
            .and_then(|mut f| f.read(&mut head))
            .map_err(|e| file_error(path, e))?;
        Ok(match FileFormat::sniff(&head[..n]) {
            FileFormat::Csv if matches!(ext, "jsonl" | "ndjson" | "json") => FileFormat::JsonLines,
            sniffed => sniffed,
        })
    }
}

pub(crate) fn file_error(path: impl AsRef<Path>, e: impl std::fmt::Display) -> SourceError {
    SourceError::File {
        path: path.as_ref().display().to_string(),
        reason: e.to_string(),
    }
}

impl UsageSource for FileSource {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn records(&self, period: Month) -> Batches {
        let (tx, rx) = mpsc::channel::<Result<Vec<SourceItem>, SourceError>>(8);
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let path = this.path_for(period);
            let result = this
                .existing(&path)
                .and_then(|()| FileSource::format(&path))
                .and_then(|format| read_file(&path, format, &tx));
            if let Err(e) = result {
                let _ = tx.blocking_send(Err(e));
            }
        });
        Box::pin(stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|batch| (batch, rx))
        }))
    }
}

pub(crate) type Sender = mpsc::Sender<Result<Vec<SourceItem>, SourceError>>;

/// Reads a file of a known format into batches.
fn read_file(path: &Path, format: FileFormat, tx: &Sender) -> Result<(), SourceError> {
    let name = path.display().to_string();
    if format == FileFormat::Parquet {
        return super::source_parquet::read_parquet(path, tx);
    }
    let file = File::open(path).map_err(|e| file_error(path, e))?;
    read_text(file, &name, format, tx)
}

/// Reads a text format from `input` (a file, a download) into batches; `name` says where it
/// came from in messages.
pub(crate) fn read_text(
    input: impl Read,
    name: &str,
    format: FileFormat,
    tx: &Sender,
) -> Result<(), SourceError> {
    let input = BufReader::with_capacity(1 << 16, input);
    match format {
        FileFormat::Csv => read_csv(input, name, tx),
        FileFormat::JsonLines => read_jsonl(input, name, tx),
        FileFormat::JsonArray => read_json_array(input, name, tx),
        FileFormat::Parquet => Err(SourceError::Format {
            path: name.to_owned(),
            reason: "Parquet is not a text format".into(),
        }),
    }
}

/// Sends a full batch; `false` when the reader went away (the run stopped).
pub(crate) fn flush(tx: &Sender, batch: &mut Vec<SourceItem>) -> bool {
    if batch.is_empty() {
        return true;
    }
    let full = std::mem::replace(batch, Vec::with_capacity(BATCH));
    tx.blocking_send(Ok(full)).is_ok()
}

fn read_csv(input: impl BufRead, path: &str, tx: &Sender) -> Result<(), SourceError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::Headers)
        .buffer_capacity(1 << 16)
        .from_reader(input);
    let headers = reader
        .headers()
        .map_err(|e| file_error(path, e))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect::<Vec<_>>();
    let column = |name: &str| headers.iter().position(|h| h == name);
    let missing: Vec<&str> = REQUIRED_FIELDS
        .iter()
        .copied()
        .filter(|f| column(f).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(SourceError::Format {
            path: path.to_owned(),
            reason: format!(
                "the header row misses column(s) {} (it has {}); the usage columns are {}",
                missing.join(", "),
                if headers.is_empty() {
                    "none".to_owned()
                } else {
                    headers.join(", ")
                },
                FIELDS.join(", ")
            ),
        });
    }
    let cols: Vec<Option<usize>> = FIELDS.iter().map(|f| column(f)).collect();
    let mut batch = Vec::with_capacity(BATCH);
    let mut record = csv::StringRecord::new();
    let mut ordinal = 0u64;
    loop {
        let line = reader.position().line() + 1;
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                ordinal += 1;
                let position = Position {
                    ordinal,
                    line: Some(record.position().map_or(line, |p| p.line())),
                };
                let get = |i: usize| cols[i].and_then(|c| record.get(c));
                let fields = TextFieldsRef {
                    subscription_id: get(0),
                    item_mpn: get(1),
                    quantity: get(2),
                    start_time: get(3),
                    end_time: get(4),
                    record_id: get(5),
                    note: get(6),
                    category: get(7),
                };
                batch.push(fields.into_item(position, Vec::new()));
            }
            Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => {
                return Err(file_error(path, e));
            }
            Err(e) => {
                ordinal += 1;
                batch.push(SourceItem::Rejected(Rejection {
                    position: Position {
                        ordinal,
                        line: Some(e.position().map_or(line, |p| p.line())),
                    },
                    record_id: None,
                    reason: format!("unreadable CSV row: {e}"),
                }));
            }
        }
        if batch.len() >= BATCH && !flush(tx, &mut batch) {
            return Ok(());
        }
    }
    flush(tx, &mut batch);
    Ok(())
}

fn read_jsonl(reader: impl BufRead, path: &str, tx: &Sender) -> Result<(), SourceError> {
    let mut batch = Vec::with_capacity(BATCH);
    let mut ordinal = 0u64;
    for (i, line) in reader.split(b'\n').enumerate() {
        let line_no = i as u64 + 1;
        let bytes = line.map_err(|e| file_error(path, e))?;
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        ordinal += 1;
        let position = Position {
            ordinal,
            line: Some(line_no),
        };
        let item = match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v @ serde_json::Value::Object(_)) => match serde_json::from_value::<RawRecord>(v) {
                Ok(raw) => raw.into_item(position),
                Err(e) => SourceItem::Rejected(Rejection {
                    position,
                    record_id: None,
                    reason: format!("not a usage record: {e}"),
                }),
            },
            Ok(_) => SourceItem::Rejected(Rejection {
                position,
                record_id: None,
                reason: "not a JSON object".into(),
            }),
            Err(e) => SourceItem::Rejected(Rejection {
                position,
                record_id: None,
                reason: format!("not JSON: {e}"),
            }),
        };
        batch.push(item);
        if batch.len() >= BATCH && !flush(tx, &mut batch) {
            return Ok(());
        }
    }
    flush(tx, &mut batch);
    Ok(())
}

/// A JSON array read element by element as it is parsed: memory holds one record and one
/// batch, never the array.
struct ArrayItems<'a> {
    tx: &'a Sender,
    batch: Vec<SourceItem>,
    ordinal: u64,
    /// The reader went away (the run stopped): the rest is skipped.
    stopped: bool,
}

impl<'de> serde::de::Visitor<'de> for &mut ArrayItems<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON array of usage records")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(v) = seq.next_element::<serde_json::Value>()? {
            if self.stopped {
                continue;
            }
            self.ordinal += 1;
            let position = Position {
                ordinal: self.ordinal,
                line: None,
            };
            self.batch
                .push(match serde_json::from_value::<RawRecord>(v) {
                    Ok(raw) => raw.into_item(position),
                    Err(e) => SourceItem::Rejected(Rejection {
                        position,
                        record_id: None,
                        reason: format!("not a usage record: {e}"),
                    }),
                });
            if self.batch.len() >= BATCH && !flush(self.tx, &mut self.batch) {
                self.stopped = true;
            }
        }
        Ok(())
    }
}

fn read_json_array(input: impl BufRead, path: &str, tx: &Sender) -> Result<(), SourceError> {
    use serde::Deserializer as _;
    let mut items = ArrayItems {
        tx,
        batch: Vec::with_capacity(BATCH),
        ordinal: 0,
        stopped: false,
    };
    let mut de = serde_json::Deserializer::from_reader(input);
    de.deserialize_seq(&mut items)
        .and_then(|()| de.end())
        .map_err(|e| SourceError::Format {
            path: path.to_owned(),
            reason: format!(
                "not a JSON array of records: {e} (the records before it were read; fix the file and run again)"
            ),
        })?;
    if !items.stopped {
        flush(tx, &mut items.batch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;

    async fn read(name: &str, content: &str) -> Result<Vec<SourceItem>, SourceError> {
        let dir = std::env::temp_dir().join(format!("cu-src-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(name);
        std::fs::write(&path, content).expect("write");
        let src = FileSource::new(path)?;
        let period: Month = "2024-04".parse().expect("period");
        let batches: Vec<Vec<SourceItem>> = src.records(period).try_collect().await?;
        Ok(batches.into_iter().flatten().collect())
    }

    fn rejected(item: &SourceItem) -> Option<&Rejection> {
        match item {
            SourceItem::Rejected(r) => Some(r),
            SourceItem::Record(_) => None,
        }
    }

    #[tokio::test]
    async fn csv_with_any_column_order_and_bad_rows_kept() {
        let items = read(
            "u.csv",
            "\u{feff}item_mpn,subscription_id,quantity,start_time,end_time,note,extra\n\
             MPN-1,AS-1,2.5,2024-04-01T00:00:00Z,2024-04-30T23:59:59Z,\"a, quoted note\",x\n\
             MPN-1,AS-2,-,2024-04-01T00:00:00Z,2024-04-30T23:59:59Z,,\n\
             MPN-2,AS-3,1,2024-04-02 00:00:00,2024-04-02 10:00:00\n",
        )
        .await
        .expect("reads");
        assert_eq!(items.len(), 3);
        match &items[0] {
            SourceItem::Record(r) => {
                assert_eq!(
                    (r.subscription.as_str(), r.item_mpn.as_str()),
                    ("AS-1", "MPN-1")
                );
                assert_eq!(r.note.as_deref(), Some("a, quoted note"));
                assert_eq!(r.position.line, Some(2));
            }
            other => panic!("{other:?}"),
        }
        let bad = rejected(&items[1]).expect("rejected");
        assert_eq!(bad.position.line, Some(3));
        assert!(
            bad.reason.contains("quantity: \"-\" is not a number"),
            "{}",
            bad.reason
        );
        assert!(matches!(items[2], SourceItem::Record(_)));
    }

    #[tokio::test]
    async fn csv_without_a_required_column_is_refused_whole() {
        let e = read("bad.csv", "subscription_id,quantity\nAS-1,1\n")
            .await
            .expect_err("missing columns");
        let text = e.to_string();
        assert!(
            text.contains(
                "misses column(s) item_mpn, start_time, end_time (it has subscription_id, quantity)"
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn json_lines_with_broken_lines_kept() {
        let items = read(
            "u.jsonl",
            "{\"subscription_id\":\"AS-1\",\"item_mpn\":\"M\",\"quantity\":3,\"start_time\":\"2024-04-01\",\"end_time\":\"2024-04-02\",\"record_id\":\"v-1\"}\n\
             \n\
             {not json\n\
             [1,2]\n\
             {\"subscription_id\":\"AS-2\",\"record_id\":\"v-3\"}\n",
        )
        .await
        .expect("reads");
        assert_eq!(items.len(), 4, "the blank line is no record");
        assert!(
            matches!(&items[0], SourceItem::Record(r) if r.record_id.as_deref() == Some("v-1"))
        );
        let r = rejected(&items[1]).expect("rejected");
        assert_eq!((r.position.ordinal, r.position.line), (2, Some(3)));
        assert!(r.reason.starts_with("not JSON"), "{}", r.reason);
        assert_eq!(
            rejected(&items[2]).map(|r| r.reason.as_str()),
            Some("not a JSON object")
        );
        let r = rejected(&items[3]).expect("rejected");
        assert_eq!(r.record_id.as_deref(), Some("v-3"));
        assert!(r.reason.contains("item_mpn: is required"));
    }

    #[tokio::test]
    async fn a_json_array_file_is_read_too() {
        let items = read(
            "u.json",
            "[{\"subscription_id\":\"AS-1\",\"item_mpn\":\"M\",\"quantity\":3,\"start_time\":\"2024-04-01\",\"end_time\":\"2024-04-02\"}, 5]",
        )
        .await
        .expect("reads");
        assert_eq!(items.len(), 2);
        assert!(matches!(items[0], SourceItem::Record(_)));
        assert!(rejected(&items[1]).is_some_and(|r| r.position.ordinal == 2));
    }

    #[tokio::test]
    async fn a_large_json_array_streams_and_a_broken_one_says_where() {
        let record = "{\"subscription_id\":\"AS-1\",\"item_mpn\":\"M\",\"quantity\":1,\"start_time\":\"2024-04-01\",\"end_time\":\"2024-04-02\"}";
        let n = BATCH * 3 + 5;
        let text = format!("[{}]", vec![record; n].join(",\n"));
        let items = read("big.json", &text).await.expect("reads");
        assert_eq!(items.len(), n);
        assert!(matches!(&items[n - 1], SourceItem::Record(_)));
        let e = read(
            "broken.json",
            &format!("[{record},\n{{\"subscription_id\": ]"),
        )
        .await
        .expect_err("broken");
        let text = e.to_string();
        assert!(text.contains("not a JSON array of records"), "{text}");
        assert!(text.contains("line 2"), "{text}");
        let e = read("object.json", "[1] [2]").await.expect_err("trailing");
        assert!(e.to_string().contains("trailing"), "{e}");
    }

    #[tokio::test]
    async fn missing_file_is_a_clear_error() {
        let e = FileSource::new("/no/such/usage.csv".into()).expect_err("missing");
        assert_eq!(
            e.to_string(),
            "cannot read /no/such/usage.csv: no such file"
        );
    }

    #[tokio::test]
    async fn a_directory_is_named_as_one() {
        let dir = std::env::temp_dir();
        let e = FileSource::new(dir.clone()).expect_err("a directory");
        assert_eq!(
            e.to_string(),
            format!(
                "cannot read {}: a directory, not a file: name the export file itself (or the month's, with {{period}})",
                dir.display()
            )
        );
    }
}
