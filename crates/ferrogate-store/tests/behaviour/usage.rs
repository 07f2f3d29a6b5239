use std::collections::BTreeMap;

use ferrogate_core::tenancy::time::{self, DAY_MS, HOUR_MS};
use ferrogate_core::tenancy::{
    GroupBy, KeyId, StoreError, TenantId, UsageQuery, UsageRecord, UsageRow, UsageStore, UsageSubject, UsageTotals,
};

use crate::harness::TestDb;

/// 2024-03-10T00:00:00Z.
const T0: i64 = 1_710_028_800_000;

pub struct Row<'a> {
    pub tenant: Option<&'a TenantId>,
    pub key: Option<&'a KeyId>,
    pub model: &'a str,
    pub backend: Option<&'a str>,
    pub at: i64,
    pub tokens: (u64, u64, u64),
    pub status: u16,
    pub error: Option<&'a str>,
    pub cancelled: bool,
}

/// A row whose request id is `id` and whose row id is derived from it (so the same `id` twice is
/// the same row, as a retried batch would send it).
pub fn record(id: &str, r: Row<'_>) -> UsageRecord {
    UsageRecord {
        id: format!("row-{id}"),
        request_id: id.into(),
        tenant_id: r.tenant.cloned(),
        key_id: r.key.cloned(),
        endpoint: "chat.completions".into(),
        model_requested: r.model.into(),
        model_served: r.backend.map(|_| format!("{}-upstream", r.model)),
        backend: r.backend.map(str::to_owned),
        prompt_tokens: r.tokens.0,
        cached_prompt_tokens: r.tokens.1,
        completion_tokens: r.tokens.2,
        latency_ms: 120,
        ttft_ms: Some(30),
        http_status: r.status,
        error_type: r.error.map(str::to_owned),
        streamed: true,
        cancelled: r.cancelled,
        cache_hit: false,
        created_at_ms: r.at,
    }
}

fn ok<'a>(
    tenant: &'a TenantId,
    key: &'a KeyId,
    model: &'a str,
    backend: &'a str,
    at: i64,
    tokens: (u64, u64, u64),
) -> Row<'a> {
    Row {
        tenant: Some(tenant),
        key: Some(key),
        model,
        backend: Some(backend),
        at,
        tokens,
        status: 200,
        error: None,
        cancelled: false,
    }
}

/// Two tenants, three keys, an unauthenticated request, errors, a cancel, rows on both edges of
/// the day [T0, T0 + 1 day).
struct Fixture {
    a: TenantId,
    b: TenantId,
    a1: KeyId,
    a2: KeyId,
    b1: KeyId,
    records: Vec<UsageRecord>,
}

fn fixture() -> Fixture {
    let (a, b) = (TenantId::generate(), TenantId::generate());
    let (a1, a2, b1) = (KeyId::generate(), KeyId::generate(), KeyId::generate());
    let records = vec![
        record("r01", ok(&a, &a1, "m1", "b1", T0, (10, 2, 5))), // exactly at `from`: inside
        record("r02", ok(&a, &a1, "m1", "b1", T0 + HOUR_MS + 5, (20, 0, 7))),
        record(
            "r03",
            Row { status: 500, error: Some("server_error"), ..ok(&a, &a1, "m1", "b2", T0 + HOUR_MS + 9, (3, 0, 0)) },
        ),
        record("r04", Row { cancelled: true, ..ok(&a, &a2, "m2", "b2", T0 + 2 * HOUR_MS, (40, 8, 1)) }),
        // A stream that failed after HTTP 200: an error by its error type.
        record(
            "r05",
            Row { error: Some("upstream_error"), ..ok(&a, &a2, "m2", "b1", T0 + 2 * HOUR_MS + 1, (5, 0, 2)) },
        ),
        record("r06", ok(&b, &b1, "m1", "b1", T0 + HOUR_MS, (100, 50, 60))),
        record("r07", ok(&b, &b1, "m3", "b1", T0 + 23 * HOUR_MS, (1, 1, 1))),
        record(
            "r08",
            Row {
                tenant: None,
                key: None,
                backend: None,
                status: 404,
                error: Some("model_not_found"),
                ..ok(&a, &a1, "nope", "-", T0 + 3 * HOUR_MS, (0, 0, 0))
            },
        ),
        record("r09", ok(&a, &a1, "m1", "b1", T0 + DAY_MS, (1000, 0, 1000))), // at `to`: outside
        record("r10", ok(&b, &b1, "m1", "b1", T0 - 1, (1000, 0, 1000))),      // before: outside
    ];
    Fixture { a, b, a1, a2, b1, records }
}

/// The report computed in Rust from the records: what the database must agree with.
fn reference(records: &[UsageRecord], q: &UsageQuery) -> Vec<UsageRow> {
    let mut groups: BTreeMap<String, UsageTotals> = BTreeMap::new();
    for r in records {
        let in_window = q.from_ms <= r.created_at_ms && r.created_at_ms < q.to_ms;
        let tenant_ok = q.tenant.as_ref().is_none_or(|t| r.tenant_id.as_ref() == Some(t));
        let key_ok = q.key.as_ref().is_none_or(|k| r.key_id.as_ref() == Some(k));
        if !(in_window && tenant_ok && key_ok) {
            continue;
        }
        let label = match q.group_by {
            GroupBy::Tenant => r.tenant_id.as_ref().map(|t| t.to_string()).unwrap_or_default(),
            GroupBy::Key => r.key_id.as_ref().map(|k| k.to_string()).unwrap_or_default(),
            GroupBy::Model => r.model_requested.clone(),
            GroupBy::Backend => r.backend.clone().unwrap_or_default(),
            GroupBy::Hour => time::format_hour(r.created_at_ms),
            GroupBy::Day => time::format_day(r.created_at_ms),
        };
        let t = groups.entry(label).or_default();
        t.requests += 1;
        t.prompt_tokens += r.prompt_tokens;
        t.cached_tokens += r.cached_prompt_tokens;
        t.completion_tokens += r.completion_tokens;
        t.errors += u64::from(r.is_error());
        t.cancelled += u64::from(r.cancelled);
    }
    groups.into_iter().map(|(group, totals)| UsageRow { group, totals }).collect()
}

fn day_query(group_by: GroupBy, tenant: Option<&TenantId>, key: Option<&KeyId>) -> UsageQuery {
    UsageQuery { from_ms: T0, to_ms: T0 + DAY_MS, group_by, tenant: tenant.cloned(), key: key.cloned() }
}

fn sum(rows: &[UsageRow]) -> UsageTotals {
    rows.iter().fold(UsageTotals::default(), |mut acc, r| {
        acc.requests += r.totals.requests;
        acc.prompt_tokens += r.totals.prompt_tokens;
        acc.errors += r.totals.errors;
        acc
    })
}

pub async fn usage_queries_group_and_sum_within_bounds(db: &TestDb) {
    let s = &db.store;
    let f = fixture();
    assert_eq!(s.insert_usage(&f.records).await.unwrap(), 10);

    let filters =
        [(None, None), (Some(&f.a), None), (Some(&f.b), None), (None, Some(&f.a1)), (Some(&f.a), Some(&f.a2))];
    for group_by in GroupBy::ALL {
        for (tenant, key) in filters {
            let q = day_query(group_by, tenant, key);
            let got = s.query_usage(&q).await.unwrap();
            assert_eq!(got, reference(&f.records, &q), "{q:?}");
        }
    }

    // Spot checks by hand, so the reference itself is checked too.
    let by_hour = s.query_usage(&day_query(GroupBy::Hour, None, None)).await.unwrap();
    let labels: Vec<&str> = by_hour.iter().map(|r| r.group.as_str()).collect();
    assert_eq!(
        labels,
        ["2024-03-10T00:00Z", "2024-03-10T01:00Z", "2024-03-10T02:00Z", "2024-03-10T03:00Z", "2024-03-10T23:00Z"]
    );
    assert_eq!(
        by_hour[1].totals,
        UsageTotals {
            requests: 3,
            prompt_tokens: 123,
            cached_tokens: 50,
            completion_tokens: 67,
            errors: 1,
            cancelled: 0
        }
    );
    let all = sum(&by_hour);
    assert_eq!(
        (all.requests, all.prompt_tokens, all.errors),
        (8, 179, 3),
        "r09 (at `to`) and r10 (before) are outside"
    );

    let by_backend = s.query_usage(&day_query(GroupBy::Backend, None, None)).await.unwrap();
    assert_eq!(by_backend[0].group, "", "requests that reached no backend group under \"\"");
    let by_day = s.query_usage(&day_query(GroupBy::Day, Some(&f.a), None)).await.unwrap();
    assert_eq!(by_day.len(), 1);
    assert_eq!(by_day[0].group, "2024-03-10");
    assert_eq!(by_day[0].totals.cancelled, 1);

    // A wider window takes in the edge rows; an empty one returns nothing; an inverted one is refused.
    let wide = UsageQuery { from_ms: T0 - DAY_MS, to_ms: T0 + 2 * DAY_MS, ..day_query(GroupBy::Day, None, None) };
    let days = s.query_usage(&wide).await.unwrap();
    assert_eq!(days.iter().map(|r| r.group.as_str()).collect::<Vec<_>>(), ["2024-03-09", "2024-03-10", "2024-03-11"]);
    let empty = UsageQuery { from_ms: T0, to_ms: T0, ..day_query(GroupBy::Model, None, None) };
    assert!(s.query_usage(&empty).await.unwrap().is_empty());
    let inverted = UsageQuery { from_ms: T0 + 1, to_ms: T0, ..day_query(GroupBy::Model, None, None) };
    assert!(matches!(s.query_usage(&inverted).await, Err(StoreError::Invalid(_))));
}

pub async fn usage_filtered_by_tenant_never_sees_another_tenant(db: &TestDb) {
    let s = &db.store;
    let f = fixture();
    s.insert_usage(&f.records).await.unwrap();
    let everything = UsageQuery { from_ms: 0, to_ms: i64::MAX, ..day_query(GroupBy::Tenant, None, None) };

    for group_by in GroupBy::ALL {
        let q = UsageQuery { group_by, tenant: Some(f.b.clone()), ..everything.clone() };
        let rows = s.query_usage(&q).await.unwrap();
        let total = sum(&rows);
        assert_eq!((total.requests, total.prompt_tokens), (3, 1101), "only B's rows, grouped by {group_by:?}");
    }
    let q = UsageQuery { group_by: GroupBy::Tenant, tenant: Some(f.b.clone()), ..everything.clone() };
    assert_eq!(s.query_usage(&q).await.unwrap().iter().map(|r| &r.group).collect::<Vec<_>>(), [&f.b.to_string()]);
    let q = UsageQuery { group_by: GroupBy::Key, tenant: Some(f.a.clone()), ..everything.clone() };
    let keys: Vec<String> = s.query_usage(&q).await.unwrap().into_iter().map(|r| r.group).collect();
    let mut expected = vec![f.a1.to_string(), f.a2.to_string()];
    expected.sort();
    assert_eq!(keys, expected, "tenant A's keys only");
    // A's key under B's filter: nothing.
    let q = UsageQuery { group_by: GroupBy::Model, tenant: Some(f.b.clone()), key: Some(f.a1.clone()), ..everything };
    assert!(s.query_usage(&q).await.unwrap().is_empty());
    let b_since = s.usage_since(&UsageSubject::Tenant(f.b.clone()), 0).await.unwrap();
    assert_eq!(b_since.requests, 3);
    let b1_since = s.usage_since(&UsageSubject::Key(f.b1.clone()), T0).await.unwrap();
    assert_eq!((b1_since.requests, b1_since.total_tokens()), (2, 162));
}

pub async fn budget_usage_sums_the_utc_day_and_month(db: &TestDb) {
    let s = &db.store;
    let (t, other_t) = (TenantId::generate(), TenantId::generate());
    let (k, k2, other_k) = (KeyId::generate(), KeyId::generate(), KeyId::generate());
    // Now: 2024-03-15T12:00:00Z. Month from 2024-03-01, day from 2024-03-15.
    let now = 1_710_504_000_000;
    let (month, day) = (time::month_start(now), time::day_start(now));
    assert_eq!((time::format_day(month), time::format_day(day)), ("2024-03-01".to_owned(), "2024-03-15".to_owned()));
    let records = vec![
        record("feb", ok(&t, &k, "m", "b", month - 1, (1000, 0, 0))),
        record("month-start", ok(&t, &k, "m", "b", month, (1, 0, 2))),
        record("yesterday", ok(&t, &k, "m", "b", day - 1, (10, 0, 20))),
        record("day-start", ok(&t, &k, "m", "b", day, (100, 0, 200))),
        record("noon", ok(&t, &k2, "m", "b", now, (1000, 0, 2000))),
        record("elsewhere", ok(&other_t, &other_k, "m", "b", now, (5, 0, 5))),
    ];
    s.insert_usage(&records).await.unwrap();

    let key = s.budget_usage(&UsageSubject::Key(k.clone()), now).await.unwrap();
    assert_eq!((key.day.requests, key.day.total_tokens()), (1, 300));
    assert_eq!((key.month.requests, key.month.total_tokens()), (3, 333));
    let tenant = s.budget_usage(&UsageSubject::Tenant(t.clone()), now).await.unwrap();
    assert_eq!((tenant.day.requests, tenant.day.total_tokens()), (2, 3300));
    assert_eq!((tenant.month.requests, tenant.month.total_tokens()), (4, 3333));
    let nobody = s.budget_usage(&UsageSubject::Key(KeyId::generate()), now).await.unwrap();
    assert_eq!(nobody, Default::default());
}

pub async fn usage_rows_with_nul_bytes_are_still_written(db: &TestDb) {
    // A client can send "model": "a\u0000b"; PostgreSQL refuses NUL in text, yet the request
    // must still get its one ledger row.
    let (t, k) = (TenantId::generate(), KeyId::generate());
    let r = record(
        "nul\0id",
        Row { error: Some("model_not_found\0"), status: 404, ..ok(&t, &k, "a\0b", "b", T0, (1, 0, 0)) },
    );
    assert_eq!(db.store.insert_usage(&[r.clone(), r]).await.unwrap(), 1);
    let rows = db.store.query_usage(&day_query(GroupBy::Model, Some(&t), None)).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].group, "a\u{fffd}b");
    assert_eq!((rows[0].totals.requests, rows[0].totals.errors), (1, 1));
}
