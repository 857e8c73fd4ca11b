//! Why a command is refused.

/// Why a command is refused. Nothing is written for a refused command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A field's value is unacceptable whatever the household's state.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The field, as named in the request (e.g. `terms.end`, `life_domains[1]`).
        field: String,
        /// Why.
        reason: String,
    },
    /// A field refers to something the household does not have.
    #[error("{what} {id} not found (field {field})")]
    NotFound {
        /// The field holding the reference.
        field: String,
        /// What it refers to: `household`, `member`, `goal`, …
        what: &'static str,
        /// The id given.
        id: String,
    },
    /// Something with this id already exists.
    #[error("{what} {id} already exists (field {field})")]
    AlreadyExists {
        /// The field holding the id.
        field: String,
        /// What it is.
        what: &'static str,
        /// The id given.
        id: String,
    },
    /// The household's state does not allow this now, e.g. achieving an abandoned goal.
    #[error("{0}")]
    FailedPrecondition(String),
}

impl DomainError {
    /// An [`DomainError::InvalidArgument`].
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A [`DomainError::NotFound`].
    pub fn not_found(field: impl Into<String>, what: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            field: field.into(),
            what,
            id: id.to_string(),
        }
    }

    /// An [`DomainError::AlreadyExists`].
    pub fn exists(field: impl Into<String>, what: &'static str, id: impl ToString) -> Self {
        Self::AlreadyExists {
            field: field.into(),
            what,
            id: id.to_string(),
        }
    }
}
