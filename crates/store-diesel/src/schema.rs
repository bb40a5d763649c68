//! The tables, as Diesel sees them. Written by hand to match `migrations/postgres` and
//! `migrations/sqlite` (which differ only in column types; see [`crate::types`]).

diesel::table! {
    use diesel::sql_types::{Nullable, Text};
    use crate::types::sql::{PortableTimestamp, PortableUuid};

    users (id) {
        id -> PortableUuid,
        email -> Text,
        email_normalized -> Text,
        username -> Text,
        username_normalized -> Text,
        display_name -> Nullable<Text>,
        password_hash -> Nullable<Text>,
        status -> Text,
        locked_until -> Nullable<PortableTimestamp>,
        email_verified_at -> Nullable<PortableTimestamp>,
        last_login_at -> Nullable<PortableTimestamp>,
        created_at -> PortableTimestamp,
        updated_at -> PortableTimestamp,
        deleted_at -> Nullable<PortableTimestamp>,
        avatar_key -> Nullable<Text>,
        avatar_content_type -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::Text;

    roles (name) {
        name -> Text,
    }
}

diesel::table! {
    use diesel::sql_types::Text;
    use crate::types::sql::PortableUuid;

    user_roles (user_id, role) {
        user_id -> PortableUuid,
        role -> Text,
    }
}

diesel::table! {
    use diesel::sql_types::{Nullable, Text};
    use crate::types::sql::{PortableTimestamp, PortableUuid};

    sessions (id) {
        id -> PortableUuid,
        user_id -> PortableUuid,
        user_agent -> Nullable<Text>,
        ip -> Nullable<Text>,
        created_at -> PortableTimestamp,
        last_used_at -> PortableTimestamp,
        expires_at -> PortableTimestamp,
        revoked_at -> Nullable<PortableTimestamp>,
    }
}

diesel::table! {
    use diesel::sql_types::{Nullable, Text};
    use crate::types::sql::{PortableTimestamp, PortableUuid};

    refresh_tokens (token_hash) {
        token_hash -> Text,
        session_id -> PortableUuid,
        created_at -> PortableTimestamp,
        spent_at -> Nullable<PortableTimestamp>,
    }
}

diesel::table! {
    use diesel::sql_types::{Nullable, Text};
    use crate::types::sql::{PortableJson, PortableTimestamp, PortableUuid};

    activity_events (id) {
        id -> PortableUuid,
        user_id -> PortableUuid,
        actor_id -> Nullable<PortableUuid>,
        action -> Text,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
        created_at -> PortableTimestamp,
        details -> PortableJson,
    }
}

diesel::joinable!(user_roles -> users (user_id));
diesel::joinable!(user_roles -> roles (role));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(refresh_tokens -> sessions (session_id));

diesel::joinable!(activity_events -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(users, roles, user_roles, sessions, refresh_tokens, activity_events);
