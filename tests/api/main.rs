//! The end-to-end suite: one binary, one module per feature, every test against the real
//! server on PostgreSQL and on SQLite.

mod account;
mod admin;
mod audit;
mod avatars;
mod cache;
mod cookies;
mod docs;
mod email;
mod hardening;
mod health;
mod limits;
mod lockout;
mod login;
mod me;
mod metrics;
mod oauth;
mod oidc;
mod outage;
mod protocol;
mod quick_start;
mod register;
mod replica;
mod sessions;
mod spellings;
mod text;
mod tokens;
mod webhooks;
