//! Validation errors shared by the value objects and the use cases.

use std::fmt;

/// One invalid field of a request: which field, a stable machine-readable code, and a
/// sentence for humans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The request field, as the client named it (`email`, `password`…).
    pub field: &'static str,
    /// A stable code such as `too_short` or `invalid_format`.
    pub code: &'static str,
    /// A human-readable explanation.
    pub message: String,
}

impl FieldError {
    /// Builds a field error.
    pub fn new(field: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self { field, code, message: message.into() }
    }
}

/// Every invalid field of one request, so a client can show all problems at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(Vec<FieldError>);

impl ValidationErrors {
    /// Adds one field error.
    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    /// Collects the error of `result`, if any, and returns its value otherwise.
    pub fn check<T, E: Into<FieldError>>(&mut self, result: Result<T, E>) -> Option<T> {
        result.map_err(|e| self.push(e.into())).ok()
    }

    /// The collected errors.
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// Whether nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was collected, `Err(self)` otherwise.
    ///
    /// # Errors
    ///
    /// Returns `self` when at least one field error was collected.
    pub fn into_result(self) -> Result<(), Self> {
        if self.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl From<FieldError> for ValidationErrors {
    fn from(error: FieldError) -> Self {
        Self(vec![error])
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields: Vec<&str> = self.0.iter().map(|e| e.field).collect();
        write!(f, "invalid fields: {}", fields.join(", "))
    }
}

/// A dependency the operation needs (the database) cannot be reached or answered too slowly,
/// so the operation was refused at once instead of waiting. Adapters put it in the cause chain
/// of an `Unexpected(anyhow::Error)`; the HTTP layer answers `503 service_unavailable` with
/// `Retry-After` when it finds it there. Retrying after `retry_after_secs` may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {dependency} is unavailable; retry in {retry_after_secs} s")]
pub struct Unavailable {
    /// What is unavailable, for the log (`database`).
    pub dependency: &'static str,
    /// When a retry may succeed, in whole seconds (at least 1).
    pub retry_after_secs: u32,
}

impl Unavailable {
    /// The first [`Unavailable`] in `error`'s cause chain, if any.
    #[must_use]
    pub fn find(error: &anyhow::Error) -> Option<Self> {
        error.chain().find_map(|cause| cause.downcast_ref::<Self>().copied())
    }
}
