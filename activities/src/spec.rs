//! Dataset specifications: one JSON file per dataset (`activities/datasets/`), validated on
//! load with errors that name the field.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

/// Why a specification was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Not valid JSON or not the expected shape.
    #[error("dataset spec is malformed: {0}")]
    Malformed(String),
    /// Valid JSON with inconsistent content.
    #[error("dataset spec '{dataset}' is invalid: {reason}")]
    Invalid {
        /// Dataset name.
        dataset: String,
        /// What is wrong.
        reason: String,
    },
}

/// Landing file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated values with a header line.
    Csv,
}

/// Where and how the landing files are.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Landing {
    /// Blob prefix in the landing container.
    pub prefix: String,
    /// Format.
    pub format: Format,
    /// Strings that mean "missing".
    #[serde(default)]
    pub null_values: Vec<String>,
}

/// Column types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// 32-bit integer.
    Int32,
    /// 64-bit integer.
    Int64,
    /// 64-bit float.
    Float64,
    /// UTF-8 text.
    String,
    /// An instant, landed as RFC 3339 text (`2013-01-01T10:00:00Z`), stored in UTC
    /// (Delta's `timestamp`).
    Timestamp,
}

/// One column of the schema.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// Name.
    pub name: String,
    /// Type.
    #[serde(rename = "type")]
    pub kind: ColumnType,
    /// Whether missing values are allowed.
    pub nullable: bool,
}

/// A quality rule; a row that breaks one goes to the rejects with the rule's name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// The value is one of `values` (nulls pass).
    In {
        /// Rule name.
        name: String,
        /// Column.
        column: String,
        /// Allowed values.
        values: Vec<String>,
    },
    /// `min <= value <= max` (nulls pass).
    Between {
        /// Rule name.
        name: String,
        /// Column.
        column: String,
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: f64,
    },
    /// `column` must be present whenever `when_present` is.
    RequiredIfPresent {
        /// Rule name.
        name: String,
        /// Column.
        column: String,
        /// The column whose presence requires it.
        when_present: String,
    },
}

impl Rule {
    /// The rule's name.
    pub fn name(&self) -> &str {
        match self {
            Self::In { name, .. }
            | Self::Between { name, .. }
            | Self::RequiredIfPresent { name, .. } => name,
        }
    }

    fn columns(&self) -> Vec<&str> {
        match self {
            Self::In { column, .. } | Self::Between { column, .. } => vec![column],
            Self::RequiredIfPresent {
                column,
                when_present,
                ..
            } => vec![column, when_present],
        }
    }
}

/// A dimension joined in gold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    /// Name.
    pub name: String,
    /// CSV blob in the landing container.
    pub landing: String,
    /// Join key (same name on both sides).
    pub key: String,
    /// Columns to bring in: dimension column → new name.
    pub columns: BTreeMap<String, String>,
}

/// A gold aggregation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Rows.
    Count,
    /// Missing values of the column.
    NullCount,
    /// Mean of the column (nulls ignored).
    Mean,
    /// 90th percentile (linear interpolation, nulls ignored).
    P90,
}

/// One gold metric.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    /// Output column.
    pub name: String,
    /// Aggregation.
    pub agg: Aggregation,
    /// Input column (not for `count`).
    #[serde(default)]
    pub column: Option<String>,
}

/// The gold table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gold {
    /// Table name under `gold/<dataset>/`.
    pub table: String,
    /// Grouping columns (schema or dimension columns).
    pub group_by: Vec<String>,
    /// Metrics.
    pub metrics: Vec<Metric>,
}

/// A dataset specification.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// Dataset name (lowercase letters, digits, `_`).
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Landing files.
    pub landing: Landing,
    /// Schema of silver.
    pub schema: Vec<Column>,
    /// Deduplication key.
    pub primary_key: Vec<String>,
    /// Partition columns of silver.
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// Quality rules.
    #[serde(default)]
    pub quality_rules: Vec<Rule>,
    /// Dimensions for gold.
    #[serde(default)]
    pub dimensions: Vec<Dimension>,
    /// Gold table.
    pub gold: Gold,
}

impl DatasetSpec {
    /// Parses and validates a specification.
    pub fn parse(json: &str) -> Result<Self, Error> {
        let spec: Self = serde_json::from_str(json).map_err(|e| Error::Malformed(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: String| {
            Err(Error::Invalid {
                dataset: self.name.clone(),
                reason,
            })
        };
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return invalid("name must be lowercase letters, digits or '_'".into());
        }
        let mut columns = HashSet::new();
        for column in &self.schema {
            if !columns.insert(column.name.as_str()) {
                return invalid(format!(
                    "column '{}' appears twice in the schema",
                    column.name
                ));
            }
        }
        if self.schema.is_empty() {
            return invalid("the schema has no columns".into());
        }
        let check = |what: &str, name: &str| -> Result<(), Error> {
            if columns.contains(name) {
                Ok(())
            } else {
                Err(Error::Invalid {
                    dataset: self.name.clone(),
                    reason: format!("{what} names column '{name}', which is not in the schema"),
                })
            }
        };
        if self.primary_key.is_empty() {
            return invalid("primary_key must name at least one column".into());
        }
        for key in &self.primary_key {
            check("primary_key", key)?;
        }
        for column in &self.partition_by {
            check("partition_by", column)?;
        }
        for rule in &self.quality_rules {
            for column in rule.columns() {
                check(&format!("quality rule '{}'", rule.name()), column)?;
            }
            if let Rule::Between { min, max, name, .. } = rule {
                if min > max {
                    return invalid(format!("quality rule '{name}' has min > max"));
                }
            }
        }
        let mut known: HashSet<String> = columns.iter().map(|c| (*c).to_owned()).collect();
        for dimension in &self.dimensions {
            check(&format!("dimension '{}'", dimension.name), &dimension.key)?;
            known.extend(dimension.columns.values().cloned());
        }
        for group in &self.gold.group_by {
            if !known.contains(group) {
                return invalid(format!("gold group_by names '{group}', which is neither a column nor a dimension column"));
            }
        }
        for metric in &self.gold.metrics {
            match (&metric.agg, &metric.column) {
                (Aggregation::Count, _) => {}
                (_, Some(column)) => check(&format!("gold metric '{}'", metric.name), column)?,
                (_, None) => {
                    return invalid(format!("gold metric '{}' needs a column", metric.name))
                }
            }
        }
        Ok(())
    }

    /// The schema column of that name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.schema.iter().find(|c| c.name == name)
    }
}

/// The names of the datasets shipped with the product.
pub const BUILTIN: &[&str] = &["flights"];

/// The datasets shipped with the product.
pub fn builtin(name: &str) -> Option<Result<DatasetSpec, Error>> {
    match name {
        "flights" => Some(DatasetSpec::parse(include_str!("../datasets/flights.json"))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flights_spec_is_valid() {
        let spec = builtin("flights").unwrap().unwrap();
        assert_eq!(spec.schema.len(), 19);
        assert_eq!(spec.primary_key.len(), 7);
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let good: serde_json::Value =
            serde_json::from_str(include_str!("../datasets/flights.json")).unwrap();
        let mut bad = good.clone();
        bad["primary_key"] = serde_json::json!(["nope"]);
        let err = DatasetSpec::parse(&bad.to_string())
            .unwrap_err()
            .to_string();
        assert!(err.contains("primary_key names column 'nope'"), "{err}");
        let mut bad = good.clone();
        bad["schema"][0]["type"] = serde_json::json!("decimal");
        let err = DatasetSpec::parse(&bad.to_string())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("malformed") && err.contains("decimal"),
            "{err}"
        );
        let mut bad = good.clone();
        bad["gold"]["metrics"][2]["column"] = serde_json::Value::Null;
        let err = DatasetSpec::parse(&bad.to_string())
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs a column"), "{err}");
        let mut bad = good;
        bad["surprise"] = serde_json::json!(1);
        assert!(
            DatasetSpec::parse(&bad.to_string()).is_err(),
            "unknown fields are refused"
        );
    }
}
