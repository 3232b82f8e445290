//! The shared pagination of every list: `limit` 1..=500 (default 50) and `page` from 1, answered with
//! `{data, pagination}`. A page past the end is `data: []` with the right totals.

use std::collections::HashMap;

use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::error::FieldError;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

/// The `limit` and `page` query parameters, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Records per page, 1 to 500.
    #[param(minimum = 1, maximum = 500, default = 50, required = false)]
    pub limit: u32,
    /// Page number, from 1.
    #[param(value_type = i64, minimum = 1, maximum = 4294967295_u64, default = 1, required = false)]
    pub page: u32,
}

impl Default for PageParams {
    fn default() -> Self {
        Self {
            limit: DEFAULT_LIMIT,
            page: 1,
        }
    }
}

impl PageParams {
    /// Reads `limit` and `page` from the query, adding a fault for each bad one to `errors`.
    pub fn from_query(query: &HashMap<String, String>, errors: &mut Vec<FieldError>) -> Self {
        let limit = parse_bounded(query, "limit", 1, MAX_LIMIT, errors).unwrap_or(DEFAULT_LIMIT);
        let page = parse_bounded(query, "page", 1, u32::MAX, errors).unwrap_or(1);
        Self { limit, page }
    }

    /// Rows to skip before this page.
    pub fn offset(&self) -> i64 {
        (i64::from(self.page) - 1) * i64::from(self.limit)
    }
}

fn parse_bounded(
    query: &HashMap<String, String>,
    name: &str,
    min: u32,
    max: u32,
    errors: &mut Vec<FieldError>,
) -> Option<u32> {
    let raw = query.get(name)?;
    let message = if max == u32::MAX {
        format!("must be a whole number of at least {min}")
    } else {
        format!("must be a whole number from {min} to {max}")
    };
    let digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
    match raw.parse::<u64>() {
        Err(_) if digits && max == u32::MAX => {
            errors.push(FieldError::new(
                format!("query.{name}"),
                format!("must be at most {max}"),
            ));
            None
        }
        Ok(n) if n > u64::from(max) && max == u32::MAX => {
            errors.push(FieldError::new(
                format!("query.{name}"),
                format!("must be at most {max}"),
            ));
            None
        }
        Ok(n) if (u64::from(min)..=u64::from(max)).contains(&n) => u32::try_from(n).ok(),
        _ => {
            errors.push(FieldError::new(format!("query.{name}"), message));
            None
        }
    }
}

/// The pagination block of a list response.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct Pagination {
    pub current_page: u32,
    pub page_size: u32,
    pub total_items: u64,
    pub total_pages: u64,
}

impl Pagination {
    pub fn new(params: PageParams, total_items: u64) -> Self {
        Self {
            current_page: params.page,
            page_size: params.limit,
            total_items,
            total_pages: total_items.div_ceil(u64::from(params.limit)),
        }
    }
}

/// A page of `T`.
#[derive(Debug, Serialize)]
pub struct Paginated<T> {
    pub data: Vec<T>,
    pub pagination: Pagination,
}

impl<T> Paginated<T> {
    pub fn new(data: Vec<T>, params: PageParams, total_items: u64) -> Self {
        Self {
            data,
            pagination: Pagination::new(params, total_items),
        }
    }
}

/// `from` and `to` as inclusive UTC dates (`YYYY-MM-DD`), turned into the half-open instant range
/// `[from 00:00, to+1 00:00)`. Adds a fault to `errors` for each bad one.
pub fn date_range(
    query: &HashMap<String, String>,
    errors: &mut Vec<FieldError>,
) -> (Option<crate::store::Ts>, Option<crate::store::Ts>) {
    let mut day = |name: &str| -> Option<chrono::NaiveDate> {
        let raw = query.get(name)?;
        match chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
            Ok(date) if raw.len() == 10 => Some(date),
            _ => {
                errors.push(FieldError::new(
                    format!("query.{name}"),
                    "must be a date written YYYY-MM-DD",
                ));
                None
            }
        }
    };
    let (from, to) = (day("from"), day("to"));
    if let (Some(from), Some(to)) = (from, to) {
        if to < from {
            errors.push(FieldError::new("query.to", "must not be before `from`"));
        }
    }
    let start = |date: chrono::NaiveDate| {
        date.and_hms_opt(0, 0, 0)
            .map(|t| crate::store::Ts::from_datetime(t.and_utc()))
    };
    (
        from.and_then(start),
        to.and_then(|d| d.succ_opt()).and_then(start),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> (PageParams, Vec<FieldError>) {
        let query = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut errors = Vec::new();
        (PageParams::from_query(&query, &mut errors), errors)
    }

    #[test]
    fn defaults_are_fifty_per_page_from_page_one() {
        assert_eq!(parse(&[]), (PageParams { limit: 50, page: 1 }, vec![]));
    }

    #[test]
    fn limits_outside_one_to_five_hundred_are_rejected_with_their_path() {
        for bad in ["0", "501", "-1", "ten", ""] {
            let (_, errors) = parse(&[("limit", bad)]);
            assert_eq!(
                errors,
                vec![FieldError::new(
                    "query.limit",
                    "must be a whole number from 1 to 500"
                )],
                "{bad}"
            );
        }
        assert!(parse(&[("limit", "500")]).1.is_empty());
    }

    #[test]
    fn page_zero_and_words_are_rejected() {
        for bad in ["0", "x", "1.5"] {
            let (_, errors) = parse(&[("page", bad)]);
            assert_eq!(
                errors,
                vec![FieldError::new(
                    "query.page",
                    "must be a whole number of at least 1"
                )],
                "{bad}"
            );
        }
    }

    #[test]
    fn a_page_too_large_to_store_says_so() {
        let (_, errors) = parse(&[("page", "4294967296")]);
        assert_eq!(
            errors,
            vec![FieldError::new("query.page", "must be at most 4294967295")]
        );
        let (_, errors) = parse(&[("page", "99999999999999999999999")]);
        assert_eq!(errors[0].message, "must be at most 4294967295");
        assert!(parse(&[("page", "4294967295")]).1.is_empty());
    }

    #[test]
    fn totals_round_up_to_whole_pages() {
        let p = Pagination::new(PageParams { limit: 50, page: 3 }, 101);
        assert_eq!((p.total_pages, p.current_page, p.page_size), (3, 3, 50));
        assert_eq!(Pagination::new(PageParams::default(), 0).total_pages, 0);
    }
}

/// A page whose `data` the database built as one JSON array (`store::page_json`), answered as
/// `{data, pagination}` without decoding it again.
#[derive(Debug)]
pub struct JsonPage {
    data: String,
    pagination: Pagination,
}

impl JsonPage {
    /// `data` is the text of a JSON array.
    pub fn new(data: String, params: PageParams, total_items: u64) -> Self {
        Self {
            data,
            pagination: Pagination::new(params, total_items),
        }
    }
}

impl axum::response::IntoResponse for JsonPage {
    fn into_response(self) -> axum::response::Response {
        // Four integers: serialising them cannot fail.
        let pagination = serde_json::to_string(&self.pagination).unwrap_or_default();
        let mut body = String::with_capacity(self.data.len() + pagination.len() + 24);
        body.push_str("{\"data\":");
        body.push_str(&self.data);
        body.push_str(",\"pagination\":");
        body.push_str(&pagination);
        body.push('}');
        (
            [(
                axum::http::header::CONTENT_TYPE,
                axum::http::HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response()
    }
}
