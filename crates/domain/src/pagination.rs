//! Keyset pagination: a page of items and where the next one starts. A page's cost never
//! depends on how deep it is.

/// How many items a page holds: 1–100, 20 unless asked otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit(u8);

/// The limit is outside 1–100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("limit must be between 1 and {max}", max = PageLimit::MAX)]
pub struct InvalidPageLimit;

impl PageLimit {
    /// The largest page.
    pub const MAX: u8 = 100;

    /// A limit of `n` items.
    ///
    /// # Errors
    ///
    /// [`InvalidPageLimit`] unless `1 <= n <= 100`.
    pub fn new(n: i64) -> Result<Self, InvalidPageLimit> {
        u8::try_from(n).ok().filter(|n| (1..=Self::MAX).contains(n)).map(Self).ok_or(InvalidPageLimit)
    }

    /// The limit as a count.
    #[must_use]
    pub fn get(self) -> usize {
        usize::from(self.0)
    }
}

impl Default for PageLimit {
    fn default() -> Self {
        Self(20)
    }
}

/// One page of a list, and the position after its last item when more may follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T, C> {
    /// The items, in list order.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<C>,
}

impl<T, C> Page<T, C> {
    /// Builds a page from up to `limit + 1` fetched rows: the extra row only proves that
    /// another page exists, and `cursor_of` turns the page's last item into its cursor.
    pub fn from_rows(mut rows: Vec<T>, limit: PageLimit, cursor_of: impl Fn(&T) -> C) -> Self {
        let more = rows.len() > limit.get();
        rows.truncate(limit.get());
        let next = if more { rows.last().map(cursor_of) } else { None };
        Self { items: rows, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_outside_one_to_a_hundred_are_refused() {
        assert!(PageLimit::new(0).is_err());
        assert!(PageLimit::new(101).is_err());
        assert!(PageLimit::new(-1).is_err());
        assert_eq!(PageLimit::new(100).map(PageLimit::get), Ok(100));
        assert_eq!(PageLimit::default().get(), 20);
    }

    #[test]
    fn a_page_has_a_next_cursor_only_when_more_rows_were_found() {
        let limit = PageLimit::new(2).expect("valid");
        let full = Page::from_rows(vec![1, 2, 3], limit, |n| *n);
        assert_eq!(full, Page { items: vec![1, 2], next: Some(2) });
        let last = Page::from_rows(vec![1, 2], limit, |n| *n);
        assert_eq!(last, Page { items: vec![1, 2], next: None });
    }
}
