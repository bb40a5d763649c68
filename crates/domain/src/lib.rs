//! Gatehouse's domain: users, roles, sessions, the ports adapters implement, and the use
//! cases that tie them together.
//!
//! This crate must never depend on an adapter, a web framework, a database driver or a
//! cryptography crate. Everything with I/O sits behind a trait in [`ports`]; the use cases in
//! [`services`] are unit-tested with the mockall mocks of those traits (feature `mocks`).

pub mod activity;
pub mod avatar;
pub mod email;
pub mod error;
pub mod ids;
pub mod pagination;
pub mod ports;
pub mod read_cache;
pub mod services;
pub mod session;
pub mod user;
pub mod values;
pub mod webhooks;

pub use activity::{ActivityAction, NewActivity};
pub use avatar::{Avatar, AvatarFormat, AvatarKey, ImageRejected, ProcessedImage};
pub use email::{EmailContent, EmailTemplate, OutgoingEmail};
pub use error::{FieldError, Unavailable, ValidationErrors};
pub use ids::{ActivityId, EmailId, SessionId, UserId};
pub use session::{NewSession, RequestContext, Session};
pub use user::{Credentials, NewUser, Role, User, UserStatus};
pub use values::{DisplayName, Email, NewPassword, Username};
