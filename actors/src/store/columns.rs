//! How records map to table rows, declared once per record.
//!
//! [`stored!`] takes one line per column (the record's field, and the column's name when it
//! differs) and gives the column list, the values to write in that order, and the reader that
//! reads each field back by its column's name. A new field is one more line there (plus its
//! migration); inserts, updates and reads all follow.

use crate::domain::{
    FailureKind, PermissionMode, PolicyMode, SessionStatus, TokenUsage, WatchKind, WatchStatus,
    WorkspaceWritePolicy,
};
use rusqlite::types::{Type, Value};
use rusqlite::Row;
use std::str::FromStr;

/// Every row a filtered query returns, its named parameters bound from `values` (the filters
/// build their `WHERE` clause and values together).
pub fn named_rows<T>(
    stmt: &mut rusqlite::Statement<'_>,
    values: &[(&str, Value)],
    read: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> crate::error::Result<Vec<T>> {
    let named: Vec<(&str, &dyn rusqlite::ToSql)> = values
        .iter()
        .map(|(name, value)| (*name, value as &dyn rusqlite::ToSql))
        .collect();
    let rows = stmt.query_map(named.as_slice(), read)?;
    rows.collect::<rusqlite::Result<_>>()
        .map_err(crate::error::Error::from)
}

/// A field type that is stored in one column.
pub trait Column: Sized {
    fn to_value(&self) -> Value;
    fn read(row: &Row<'_>, column: &str) -> rusqlite::Result<Self>;
}

impl Column for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }

    fn read(row: &Row<'_>, column: &str) -> rusqlite::Result<Self> {
        row.get(column)
    }
}

impl Column for bool {
    fn to_value(&self) -> Value {
        Value::Integer((*self).into())
    }

    fn read(row: &Row<'_>, column: &str) -> rusqlite::Result<Self> {
        row.get(column)
    }
}

impl Column for u32 {
    fn to_value(&self) -> Value {
        Value::Integer((*self).into())
    }

    fn read(row: &Row<'_>, column: &str) -> rusqlite::Result<Self> {
        row.get(column)
    }
}

impl Column for i64 {
    fn to_value(&self) -> Value {
        Value::Integer(*self)
    }

    fn read(row: &Row<'_>, column: &str) -> rusqlite::Result<Self> {
        row.get(column)
    }
}

/// Sizes and counts: stored as SQLite integers, never negative when read back.
impl Column for u64 {
    fn to_value(&self) -> Value {
        Value::Integer(i64::try_from(*self).unwrap_or(i64::MAX))
    }

    fn read(row: &Row<'_>, column: &str) -> rusqlite::Result<Self> {
        Ok(row.get::<_, i64>(column)?.max(0) as u64)
    }
}

/// Enums stored by name; a name this version does not know is an error.
macro_rules! by_name {
    ($($name:ty),+) => {$(
        impl Column for $name {
            fn to_value(&self) -> Value {
                Value::Text(self.as_str().to_owned())
            }

            fn read(row: &Row<'_>, column: &str) -> rusqlite::Result<Self> {
                parse(row, column)
            }
        }
    )+};
}

by_name!(
    PolicyMode,
    PermissionMode,
    SessionStatus,
    WatchKind,
    WatchStatus
);

/// Stored by name, read leniently: an unknown name reads as the default (`""` failure kind,
/// blocked writes), as rows written before a name existed must still read.
impl Column for FailureKind {
    fn to_value(&self) -> Value {
        Value::Text(self.as_str().to_owned())
    }

    fn read(row: &Row<'_>, column: &str) -> rusqlite::Result<Self> {
        Ok(FailureKind::parse(&row.get::<_, String>(column)?))
    }
}

impl Column for WorkspaceWritePolicy {
    fn to_value(&self) -> Value {
        Value::Text(self.as_str().to_owned())
    }

    fn read(row: &Row<'_>, column: &str) -> rusqlite::Result<Self> {
        Ok(match row.get::<_, String>(column)?.as_str() {
            "contained" => Self::Contained,
            _ => Self::Blocked,
        })
    }
}

/// Token usage, kept as JSON text (`NULL` or unreadable text reads as none).
impl Column for Option<TokenUsage> {
    fn to_value(&self) -> Value {
        self.as_ref()
            .and_then(|usage| serde_json::to_string(usage).ok())
            .map_or(Value::Null, Value::Text)
    }

    fn read(row: &Row<'_>, column: &str) -> rusqlite::Result<Self> {
        let text: Option<String> = row.get(column)?;
        Ok(text.and_then(|text| serde_json::from_str(&text).ok()))
    }
}

/// Reads a text column into a type that parses from text.
pub fn parse<T: FromStr>(row: &Row<'_>, column: &str) -> rusqlite::Result<T> {
    let text: String = row.get(column)?;
    text.parse().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            Type::Text,
            format!("unexpected value '{text}' in column {column}").into(),
        )
    })
}

/// Declares a record's columns: `stored!(Name for Record { field, field = "column", … })`,
/// optionally followed by `reads { field = "column", … }` for columns only ever read (computed
/// or written by other statements). Gives `Name::COLUMNS`, `Name::values` and `Name::read`.
macro_rules! stored {
    (
        $(#[$meta:meta])* $name:ident for $record:ident {
            $($field:ident $(= $column:literal)?),+ $(,)?
        }
        $(reads { $($rfield:ident = $rcolumn:literal),* $(,)? })?
    ) => {
        $(#[$meta])*
        pub(crate) struct $name;

        #[allow(dead_code)]
        impl $name {
            /// The written columns, in the order of [`Self::values`].
            pub(crate) const COLUMNS: &'static [&'static str] =
                &[$(stored!(@column $field $($column)?)),+];

            /// The record's values for [`Self::COLUMNS`].
            pub(crate) fn values(record: &$record) -> Vec<rusqlite::types::Value> {
                use $crate::store::columns::Column;
                vec![$(record.$field.to_value()),+]
            }

            /// Reads a record by column name (the `reads` columns must be selected too).
            pub(crate) fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<$record> {
                use $crate::store::columns::Column;
                Ok($record {
                    $($field: Column::read(row, stored!(@column $field $($column)?))?,)+
                    $($($rfield: Column::read(row, $rcolumn)?,)*)?
                })
            }

            /// `COLUMNS` joined for a statement.
            pub(crate) fn list() -> String {
                Self::COLUMNS.join(", ")
            }

            /// `?1, ?2, …` for every column.
            pub(crate) fn placeholders() -> String {
                let numbered = (1..=Self::COLUMNS.len()).map(|i| format!("?{i}"));
                numbered.collect::<Vec<_>>().join(", ")
            }
        }
    };
    (@column $field:ident) => { stringify!($field) };
    (@column $field:ident $column:literal) => { $column };
}

pub(crate) use stored;
