//! List pages built by the database as one JSON array of the public objects (`Payment`, `Token`), so
//! that a page of 500 comes back as one value instead of 500 rows of many columns to decode, convert and
//! serialise again. Each backend spells the objects in its own JSON functions; both must give what
//! `domain::objects` gives for the same row (the store contract suite compares the two).

use crate::model::card::Scheme;

/// The columns of a payment that its public object shows (of its 27), for the page's subquery.
pub(crate) const PAYMENT_PAGE_COLUMNS: &str = "id, created_at, use_case, status, currency_code, reference, \
     amount_requested, amount_authorized, amount_captured, amount_voided, amount_refunded, source, \
     flow_matrix_rule, failure_details, initial_payment_id, recurring_frequency, recurring_expiry, metadata";

/// The columns of a token that its public object shows.
pub(crate) const TOKEN_PAGE_COLUMNS: &str = "id, created_at, expiry_month, expiry_year, cardholder_name, \
     issuer_identification_number, masked_account_number, account_number_last_four, account_number_length, \
     scheme, status, business_key, import_provider, expires_at";

/// `'VISA', 'Mastercard', …`: the stored scheme names the model knows (others show as `Unknown`).
fn known_schemes() -> String {
    Scheme::ALL
        .iter()
        .map(|s| super::backend::SqlText(s.as_str()).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) mod sqlite {
    /// A 16-byte UUID blob as its hyphenated lower-case text.
    fn uuid(col: &str) -> String {
        let h = format!("lower(hex({col}))");
        format!(
            "substr({h}, 1, 8) || '-' || substr({h}, 9, 4) || '-' || substr({h}, 13, 4) || '-' || \
             substr({h}, 17, 4) || '-' || substr({h}, 21, 12)"
        )
    }

    /// Microseconds since the epoch as RFC 3339 in UTC with `Z`, its fraction as `chrono`'s `AutoSi`
    /// writes it (none, 3 or 6 digits), as `model::Timestamp` serialises.
    fn timestamp(col: &str) -> String {
        let frac = format!("((({col} % 1000000) + 1000000) % 1000000)");
        format!(
            "strftime('%Y-%m-%dT%H:%M:%S', ({col} - {frac}) / 1000000, 'unixepoch') || \
             CASE WHEN {frac} = 0 THEN '' WHEN {frac} % 1000 = 0 THEN printf('.%03d', {frac} / 1000) \
             ELSE printf('.%06d', {frac}) END || 'Z'"
        )
    }

    /// Stored JSON embedded as JSON; text that does not parse shows as SQL NULL (then left out), as
    /// the Rust mapping leaves it out.
    fn raw(col: &str) -> String {
        format!("CASE WHEN json_valid({col}) THEN json({col}) END")
    }

    /// `json_remove` path that removes `key` when `keep` is false, and nothing otherwise.
    fn drop_unless(keep: &str, key: &str) -> String {
        format!("CASE WHEN {keep} THEN '$.\"-\"' ELSE '$.{key}' END")
    }

    /// One JSON array (text) of the payments `rows` selects (`PAYMENT_PAGE_COLUMNS`), in its order.
    pub(crate) fn payment_page(rows: &str) -> String {
        let source = "CASE WHEN NOT json_valid(source) THEN json('{}') \
             WHEN json_type(source) = 'object' AND json_type(source, '$.cardholder_name') IS NULL \
             THEN json_set(source, '$.cardholder_name', NULL) ELSE json(source) END";
        let object = format!(
            "json_object('id', {id}, 'amount', json_object('requested', amount_requested, \
             'authorized', amount_authorized, 'captured', amount_captured, 'voided', amount_voided, \
             'refunded', amount_refunded), 'created_at', {created_at}, 'currency_code', currency_code, \
             'flow_matrix_rule', flow_matrix_rule, 'reference', reference, 'status', status, \
             'use_case', use_case, 'source', {source}, 'metadata', {metadata}, \
             'failure_details', {failure_details}, 'initial_payment_id', \
             CASE WHEN initial_payment_id IS NOT NULL THEN {initial} END, \
             'recurring_frequency', recurring_frequency, 'recurring_expiry', recurring_expiry)",
            id = uuid("id"),
            created_at = timestamp("created_at"),
            metadata = raw("metadata"),
            failure_details = raw("failure_details"),
            initial = uuid("initial_payment_id"),
        );
        let drops = [
            drop_unless("amount_authorized > 0", "amount.authorized"),
            drop_unless("amount_captured > 0", "amount.captured"),
            drop_unless("amount_voided > 0", "amount.voided"),
            drop_unless("amount_refunded > 0", "amount.refunded"),
            drop_unless("json_valid(metadata)", "metadata"),
            drop_unless("json_valid(failure_details)", "failure_details"),
            drop_unless("initial_payment_id IS NOT NULL", "initial_payment_id"),
            drop_unless("recurring_frequency IS NOT NULL", "recurring_frequency"),
            drop_unless("recurring_expiry IS NOT NULL", "recurring_expiry"),
        ]
        .join(", ");
        // The aggregate reads the subquery's rows in its order (a sorted, limited subquery is run
        // before the aggregate, row by row in that order).
        format!("SELECT json_group_array(json_remove({object}, {drops})) FROM ({rows})")
    }

    /// One JSON array (text) of the tokens `rows` selects (`TOKEN_PAGE_COLUMNS`), in its order;
    /// `$url` is the public URL that starts the card-art links.
    pub(crate) fn token_page(rows: &str, url: usize) -> String {
        let object = format!(
            "json_object('id', {id}, 'created_at', {created_at}, 'expiry_month', expiry_month, \
             'expiry_year', expiry_year, 'cardholder_name', cardholder_name, \
             'issuer_identification_number', issuer_identification_number, \
             'masked_account_number', masked_account_number, \
             'account_number_last_four', account_number_last_four, \
             'account_number_length', account_number_length, \
             'scheme', CASE WHEN scheme IN ({schemes}) THEN scheme ELSE 'Unknown' END, \
             'status', status, 'network_token_status', 'not_available', \
             'card_art_url', ${url} || '/tokens/card-art/' || {id}, \
             'identity_and_verification', 'none', 'business_key', business_key, \
             'import_provider', import_provider, 'expires_at', \
             CASE WHEN expires_at IS NOT NULL THEN {expires_at} END)",
            id = uuid("id"),
            created_at = timestamp("created_at"),
            expires_at = timestamp("expires_at"),
            schemes = super::known_schemes(),
        );
        let drops = [
            drop_unless("cardholder_name IS NOT NULL", "cardholder_name"),
            drop_unless("business_key IS NOT NULL", "business_key"),
            drop_unless("import_provider IS NOT NULL", "import_provider"),
            drop_unless("expires_at IS NOT NULL", "expires_at"),
        ]
        .join(", ");
        format!("SELECT json_group_array(json_remove({object}, {drops})) FROM ({rows})")
    }
}

pub(crate) mod postgres {
    /// A `timestamptz` as RFC 3339 in UTC with `Z`, its fraction as `chrono`'s `AutoSi` writes it
    /// (none, 3 or 6 digits), as `model::Timestamp` serialises.
    fn timestamp(col: &str) -> String {
        let utc = format!("({col} AT TIME ZONE 'UTC')");
        let us = format!("(EXTRACT(MICROSECONDS FROM {col})::bigint % 1000000)");
        format!(
            "to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN {us} = 0 THEN '' \
             WHEN {us} % 1000 = 0 THEN to_char({utc}, '.MS') ELSE to_char({utc}, '.US') END || 'Z'"
        )
    }

    /// `{"key": value}` when `keep`, else `{}`: to add an optional member to a `jsonb` object.
    fn member_if(keep: &str, key: &str, value: &str) -> String {
        format!("CASE WHEN {keep} THEN jsonb_build_object('{key}', {value}) ELSE '{{}}'::jsonb END")
    }

    /// One JSON array (text) of the payments `rows` selects (`PAYMENT_PAGE_COLUMNS`), in its order.
    pub(crate) fn payment_page(rows: &str) -> String {
        let amount = [
            "jsonb_build_object('requested', amount_requested)".to_owned(),
            member_if("amount_authorized > 0", "authorized", "amount_authorized"),
            member_if("amount_captured > 0", "captured", "amount_captured"),
            member_if("amount_voided > 0", "voided", "amount_voided"),
            member_if("amount_refunded > 0", "refunded", "amount_refunded"),
        ]
        .join(" || ");
        let source = "CASE WHEN jsonb_typeof(source::jsonb) = 'object' AND NOT source::jsonb ? 'cardholder_name' \
             THEN source::jsonb || '{\"cardholder_name\": null}'::jsonb ELSE source::jsonb END";
        let object = [
            format!(
                "jsonb_build_object('id', id, 'amount', {amount}, 'created_at', {created_at}, \
                 'currency_code', currency_code, 'flow_matrix_rule', flow_matrix_rule, \
                 'reference', reference, 'status', status, 'use_case', use_case, 'source', {source})",
                created_at = timestamp("created_at"),
            ),
            member_if("metadata IS NOT NULL", "metadata", "metadata::jsonb"),
            member_if(
                "failure_details IS NOT NULL",
                "failure_details",
                "failure_details::jsonb",
            ),
            member_if(
                "initial_payment_id IS NOT NULL",
                "initial_payment_id",
                "initial_payment_id",
            ),
            member_if(
                "recurring_frequency IS NOT NULL",
                "recurring_frequency",
                "recurring_frequency",
            ),
            member_if(
                "recurring_expiry IS NOT NULL",
                "recurring_expiry",
                "recurring_expiry",
            ),
        ]
        .join(" || ");
        format!(
            "SELECT COALESCE(jsonb_agg({object} ORDER BY created_at DESC, id DESC)::text, '[]') \
             FROM ({rows}) AS page"
        )
    }

    /// One JSON array (text) of the tokens `rows` selects (`TOKEN_PAGE_COLUMNS`), ordered by
    /// `order` (`ASC` or `DESC`); `$url` is the public URL that starts the card-art links.
    pub(crate) fn token_page(rows: &str, url: usize, order: &str) -> String {
        let object = [
            format!(
                "jsonb_build_object('id', id, 'created_at', {created_at}, 'expiry_month', expiry_month, \
                 'expiry_year', expiry_year, 'issuer_identification_number', issuer_identification_number, \
                 'masked_account_number', masked_account_number, \
                 'account_number_last_four', account_number_last_four, \
                 'account_number_length', account_number_length, \
                 'scheme', CASE WHEN scheme IN ({schemes}) THEN scheme ELSE 'Unknown' END, \
                 'status', status, 'network_token_status', 'not_available', \
                 'card_art_url', ${url}::text || '/tokens/card-art/' || id::text, \
                 'identity_and_verification', 'none')",
                created_at = timestamp("created_at"),
                schemes = super::known_schemes(),
            ),
            member_if(
                "cardholder_name IS NOT NULL",
                "cardholder_name",
                "cardholder_name",
            ),
            member_if("business_key IS NOT NULL", "business_key", "business_key"),
            member_if(
                "import_provider IS NOT NULL",
                "import_provider",
                "import_provider",
            ),
            member_if(
                "expires_at IS NOT NULL",
                "expires_at",
                &timestamp("expires_at"),
            ),
        ]
        .join(" || ");
        format!(
            "SELECT COALESCE(jsonb_agg({object} ORDER BY created_at {order}, id {order})::text, '[]') \
             FROM ({rows}) AS page"
        )
    }
}
