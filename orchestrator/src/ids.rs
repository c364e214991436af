//! Validation of instance ids and names: they become table keys and URL segments, so a
//! bad one is refused with a message that says why, never silently altered.

/// Longest accepted instance id (Durable Functions accepts up to 256 characters).
pub const MAX_INSTANCE_ID_LEN: usize = 256;
/// Longest accepted orchestration, activity or event name.
pub const MAX_NAME_LEN: usize = 256;

/// Why an id or a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Empty.
    #[error("{what} must not be empty")]
    Empty {
        /// What was checked.
        what: &'static str,
    },
    /// Too long.
    #[error("{what} is {len} characters long; at most {max} are allowed")]
    TooLong {
        /// What was checked.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Holds a character storage keys cannot hold.
    #[error("{what} contains {found}, which is not allowed (no '/', '\\', '#', '?' or control characters)")]
    ForbiddenCharacter {
        /// What was checked.
        what: &'static str,
        /// The offending character, described.
        found: String,
    },
}

/// Checks an instance id.
pub fn validate_instance_id(id: &str) -> Result<(), Error> {
    validate("instance id", id, MAX_INSTANCE_ID_LEN)?;
    // An instance id is a table key: the storage SDK puts it in entity URLs unescaped, so
    // an id with a quote could be started but never read back.
    if id.contains('\'') {
        return Err(Error::ForbiddenCharacter {
            what: "instance id",
            found: "\"'\"".into(),
        });
    }
    Ok(())
}

/// Checks an orchestration, activity or event name.
pub fn validate_name(name: &str) -> Result<(), Error> {
    validate("name", name, MAX_NAME_LEN)
}

fn validate(what: &'static str, value: &str, max: usize) -> Result<(), Error> {
    if value.trim().is_empty() {
        return Err(Error::Empty { what });
    }
    let len = value.chars().count();
    if len > max {
        return Err(Error::TooLong { what, len, max });
    }
    if let Some(c) = value
        .chars()
        .find(|c| matches!(c, '/' | '\\' | '#' | '?') || c.is_control())
    {
        let found = if c.is_control() {
            format!("U+{:04X}", c as u32)
        } else {
            format!("'{c}'")
        };
        return Err(Error::ForbiddenCharacter { what, found });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_ids_and_refuses_key_breaking_ones() {
        assert!(validate_instance_id("job-42:bronze.2024-01-01").is_ok());
        assert_eq!(
            validate_instance_id(""),
            Err(Error::Empty {
                what: "instance id"
            })
        );
        assert!(matches!(
            validate_instance_id("a/b"),
            Err(Error::ForbiddenCharacter { .. })
        ));
        assert!(matches!(
            validate_instance_id("a\u{7}"),
            Err(Error::ForbiddenCharacter { .. })
        ));
        let long = "x".repeat(257);
        assert!(matches!(
            validate_instance_id(&long),
            Err(Error::TooLong { len: 257, .. })
        ));
        let message = validate_instance_id("a#b").unwrap_err().to_string();
        assert!(message.contains("'#'"), "{message}");
        // A quote breaks the table service's entity URLs: started, never read back.
        assert!(matches!(
            validate_instance_id("it's"),
            Err(Error::ForbiddenCharacter { .. })
        ));
    }
}
