//! A table's schema in Delta terms, from the frame polars wrote, and the rule for a schema
//! that changes between runs.
//!
//! Schema evolution: a run may *add* nullable columns (the table's schema gains them in
//! its own commit before the run's data, and older files read them as null); a run that
//! drops a column, changes a type or adds a non-nullable column fails with
//! `IncompatibleSchema` naming the columns, and nothing is written. A landing column the
//! dataset spec does not name stays in bronze (as text) and never reaches silver.

use deltalake::kernel::{DataType as DeltaType, StructField};
use polars::prelude::{DataType, Schema, TimeUnit};

/// A column of a table: its name, Delta type and nullability.
#[derive(Debug, Clone, PartialEq)]
pub struct TableColumn {
    /// Name.
    pub name: String,
    /// Delta type.
    pub kind: DeltaType,
    /// Whether missing values are allowed.
    pub nullable: bool,
}

impl TableColumn {
    /// The Delta field.
    pub fn field(&self) -> StructField {
        StructField::new(self.name.clone(), self.kind.clone(), self.nullable)
    }
}

/// The Delta type of a polars type, or why it has none here.
pub fn delta_type(kind: &DataType) -> Result<DeltaType, String> {
    Ok(match kind {
        DataType::Boolean => DeltaType::BOOLEAN,
        DataType::Int32 => DeltaType::INTEGER,
        DataType::Int64 => DeltaType::LONG,
        DataType::Float64 => DeltaType::DOUBLE,
        DataType::String => DeltaType::STRING,
        DataType::Date => DeltaType::DATE,
        // Delta's `timestamp` is an instant in microseconds; the frames carry UTC.
        DataType::Datetime(TimeUnit::Microseconds, Some(_)) => DeltaType::TIMESTAMP,
        other => return Err(format!("no Delta type for the polars type {other}")),
    })
}

/// The columns of a frame's schema; `required` names the non-nullable ones.
pub fn table_columns(schema: &Schema, required: &[&str]) -> Result<Vec<TableColumn>, String> {
    schema
        .iter()
        .map(|(name, kind)| {
            Ok(TableColumn {
                name: name.to_string(),
                kind: delta_type(kind).map_err(|e| format!("column {name}: {e}"))?,
                nullable: !required.contains(&name.as_str()),
            })
        })
        .collect()
}

/// What a run's columns mean for a table that has `existing` columns: the columns to add
/// first (nullable, new), or why the run cannot write there.
pub fn evolution(
    existing: &[TableColumn],
    wanted: &[TableColumn],
) -> Result<Vec<TableColumn>, String> {
    let mut problems = Vec::new();
    for old in existing {
        match wanted.iter().find(|c| c.name == old.name) {
            None => problems.push(format!("{} is in the table but not in this run", old.name)),
            Some(new) if new.kind != old.kind => problems.push(format!(
                "{} is {} in the table and {} in this run",
                old.name,
                type_name(&old.kind),
                type_name(&new.kind)
            )),
            Some(_) => {}
        }
    }
    let mut added = Vec::new();
    for new in wanted {
        if existing.iter().any(|c| c.name == new.name) {
            continue;
        }
        if new.nullable {
            added.push(new.clone());
        } else {
            problems.push(format!(
                "{} is new and not nullable (older rows have no value)",
                new.name
            ));
        }
    }
    if problems.is_empty() {
        Ok(added)
    } else {
        Err(problems.join("; "))
    }
}

/// A Delta type as the log spells it.
pub fn type_name(kind: &DeltaType) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{kind:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, kind: DeltaType, nullable: bool) -> TableColumn {
        TableColumn {
            name: name.into(),
            kind,
            nullable,
        }
    }

    #[test]
    fn frame_types_map_to_delta_types_with_nullability() {
        let schema = Schema::from_iter([
            ("year".into(), DataType::Int32),
            ("flights".into(), DataType::Int64),
            ("delay".into(), DataType::Float64),
            ("carrier".into(), DataType::String),
            (
                "time_hour".into(),
                DataType::Datetime(TimeUnit::Microseconds, Some(polars::prelude::TimeZone::UTC)),
            ),
        ]);
        let columns = table_columns(&schema, &["year", "carrier"]).unwrap();
        let names: Vec<(String, String, bool)> = columns
            .iter()
            .map(|c| (c.name.clone(), type_name(&c.kind), c.nullable))
            .collect();
        assert_eq!(
            names,
            [
                ("year".into(), "integer".into(), false),
                ("flights".into(), "long".into(), true),
                ("delay".into(), "double".into(), true),
                ("carrier".into(), "string".into(), false),
                ("time_hour".into(), "timestamp".into(), true),
            ]
        );
    }

    #[test]
    fn a_type_without_a_delta_type_is_named() {
        let schema = Schema::from_iter([("n".into(), DataType::UInt8)]);
        assert_eq!(
            table_columns(&schema, &[]).unwrap_err(),
            "column n: no Delta type for the polars type u8"
        );
    }

    #[test]
    fn evolution_adds_nullable_columns_and_refuses_the_rest() {
        let table = [
            column("a", DeltaType::INTEGER, false),
            column("b", DeltaType::STRING, true),
        ];
        assert_eq!(evolution(&table, &table).unwrap(), vec![]);
        let more = [
            table[0].clone(),
            table[1].clone(),
            column("c", DeltaType::DOUBLE, true),
        ];
        assert_eq!(evolution(&table, &more).unwrap(), vec![more[2].clone()]);
        let retyped = [column("a", DeltaType::LONG, false), table[1].clone()];
        assert_eq!(
            evolution(&table, &retyped).unwrap_err(),
            "a is integer in the table and long in this run"
        );
        let dropped = [table[0].clone()];
        assert_eq!(
            evolution(&table, &dropped).unwrap_err(),
            "b is in the table but not in this run"
        );
        let required = [
            table[0].clone(),
            table[1].clone(),
            column("c", DeltaType::DOUBLE, false),
        ];
        assert_eq!(
            evolution(&table, &required).unwrap_err(),
            "c is new and not nullable (older rows have no value)"
        );
    }
}
