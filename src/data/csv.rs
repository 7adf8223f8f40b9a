//! A small, strict CSV loader for numeric classification data.
//!
//! Every row holds numeric features and one integer class label. Quoting is not
//! supported; anything unexpected is reported with its line number.

use std::path::Path;

use crate::data::dataset::Dataset;
use crate::error::{Error, Result};

/// Largest class count inferred from labels alone; a bigger label is far more
/// likely a wrong label column than a real class, and would size huge outputs.
const MAX_INFERRED_CLASSES: u32 = 1 << 16;

/// Which column of a CSV row holds the class label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelColumn {
    /// The first column.
    First,
    /// The last column.
    Last,
    /// The column with this zero-based index.
    Index(usize),
}

/// How to read a CSV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// Whether the first non-blank line is a header to skip.
    pub has_header: bool,
    /// Which column holds the label.
    pub label_column: LabelColumn,
    /// The field separator (an ASCII byte).
    pub delimiter: u8,
    /// The number of classes; `None` means the largest label plus one.
    pub classes: Option<usize>,
}

impl Default for CsvOptions {
    /// No header, label in the last column, comma-separated, classes inferred.
    fn default() -> Self {
        CsvOptions {
            has_header: false,
            label_column: LabelColumn::Last,
            delimiter: b',',
            classes: None,
        }
    }
}

/// Reads a CSV file of numeric features plus one integer label column.
///
/// See [`parse_csv`] for the rules; unreadable or non-UTF-8 files are errors too.
pub fn load_csv(path: impl AsRef<Path>, options: &CsvOptions) -> Result<Dataset> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| Error::CorruptFile {
        path: path.to_path_buf(),
        reason: format!("not valid UTF-8: {e}"),
    })?;
    parse_csv(&text, path, options)
}

/// Parses CSV text; `path` only names the source in error messages.
///
/// Blank lines are skipped and fields are trimmed. Every row must have as many
/// fields as the first (header or data) row. Features must be finite numbers and
/// labels non-negative integers (`3` or `3.0`), below `options.classes` when given
/// ([`Error::LabelOutOfRange`]). Other problems are [`Error::Csv`] with the
/// one-based line number; no data rows at all is [`Error::EmptyData`].
pub fn parse_csv(text: &str, path: &Path, options: &CsvOptions) -> Result<Dataset> {
    let delimiter = check_options(options)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line))
        .filter(|(_, line)| !line.trim().is_empty());
    let mut parser = RowParser {
        path,
        delimiter,
        label_column: options.label_column,
        layout: None,
    };
    if options.has_header {
        if let Some((line_no, line)) = rows.next() {
            parser.set_layout(line_no, split_fields(line, delimiter).count())?;
        }
    }
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for (line_no, line) in rows {
        labels.push(parser.parse_row(line_no, line, &mut features)?);
    }
    finish(features, labels, path, options.classes)
}

/// Column layout fixed by the first row: field count and label position.
#[derive(Clone, Copy)]
struct Layout {
    fields: usize,
    label: usize,
}

struct RowParser<'a> {
    path: &'a Path,
    delimiter: char,
    label_column: LabelColumn,
    layout: Option<Layout>,
}

impl RowParser<'_> {
    fn set_layout(&mut self, line_no: usize, fields: usize) -> Result<Layout> {
        if fields < 2 {
            return Err(self.err(
                line_no,
                format!("row has {fields} field(s); need at least one feature and a label"),
            ));
        }
        let label = match self.label_column {
            LabelColumn::First => 0,
            LabelColumn::Last => fields - 1,
            LabelColumn::Index(i) if i < fields => i,
            LabelColumn::Index(i) => {
                return Err(self.err(
                    line_no,
                    format!("label column {i} does not exist in a row of {fields} fields"),
                ))
            }
        };
        let layout = Layout { fields, label };
        self.layout = Some(layout);
        Ok(layout)
    }

    /// Appends the row's features to `features` and returns its label.
    fn parse_row(&mut self, line_no: usize, line: &str, features: &mut Vec<f32>) -> Result<u32> {
        let count = split_fields(line, self.delimiter).count();
        let layout = match self.layout {
            Some(layout) => layout,
            None => self.set_layout(line_no, count)?,
        };
        if count != layout.fields {
            return Err(self.err(
                line_no,
                format!("expected {} fields, found {count}", layout.fields),
            ));
        }
        let mut label = 0;
        for (col, field) in split_fields(line, self.delimiter).enumerate() {
            if field.contains('"') {
                return Err(self.err(
                    line_no,
                    format!("column {}: quoted fields are not supported", col + 1),
                ));
            }
            if col == layout.label {
                label = self.parse_label(line_no, field)?;
            } else {
                features.push(self.parse_feature(line_no, col, field)?);
            }
        }
        Ok(label)
    }

    fn parse_feature(&self, line_no: usize, col: usize, field: &str) -> Result<f32> {
        match field.parse::<f32>() {
            Ok(v) if v.is_finite() => Ok(v),
            Ok(v) => Err(self.err(
                line_no,
                format!("column {}: non-finite feature {v}", col + 1),
            )),
            Err(_) => Err(self.err(
                line_no,
                format!("column {}: {field:?} is not a number", col + 1),
            )),
        }
    }

    fn parse_label(&self, line_no: usize, field: &str) -> Result<u32> {
        if let Ok(v) = field.parse::<u32>() {
            return Ok(v);
        }
        // Accept integral floats such as "3.0", which numeric exporters often write.
        match field.parse::<f64>() {
            Ok(v) if v >= 0.0 && v.fract() == 0.0 && v <= f64::from(u32::MAX) => Ok(v as u32),
            _ => Err(self.err(
                line_no,
                format!("label {field:?} is not a non-negative integer"),
            )),
        }
    }

    fn err(&self, line: usize, reason: String) -> Error {
        Error::Csv {
            path: self.path.to_path_buf(),
            line,
            reason,
        }
    }
}

/// Rejects options that cannot describe a parseable file.
fn check_options(options: &CsvOptions) -> Result<char> {
    let d = options.delimiter;
    if !d.is_ascii() || matches!(d, b'"' | b'\n' | b'\r') {
        return Err(Error::config(format!(
            "CSV delimiter 0x{d:02x} must be an ASCII byte other than a quote or newline"
        )));
    }
    if options.classes == Some(0) {
        return Err(Error::config("CSV classes must be > 0 when given"));
    }
    Ok(char::from(d))
}

fn split_fields(line: &str, delimiter: char) -> impl Iterator<Item = &str> {
    line.split(delimiter).map(str::trim)
}

/// Checks labels against the class count and builds the data set.
fn finish(
    features: Vec<f32>,
    labels: Vec<u32>,
    path: &Path,
    classes: Option<usize>,
) -> Result<Dataset> {
    let Some(&max) = labels.iter().max() else {
        return Err(Error::EmptyData(format!(
            "{} has no data rows",
            path.display()
        )));
    };
    let classes = match classes {
        Some(c) => c,
        None if max < MAX_INFERRED_CLASSES => max as usize + 1,
        None => {
            return Err(Error::config(format!(
                "largest label {max} implies over {MAX_INFERRED_CLASSES} classes; set CsvOptions::classes explicitly"
            )))
        }
    };
    if let Some(index) = labels.iter().position(|&l| l as usize >= classes) {
        return Err(Error::LabelOutOfRange {
            index,
            label: i64::from(labels[index]),
            classes,
        });
    }
    let dim = features.len() / labels.len();
    Dataset::new(features, labels, dim, classes)
}
