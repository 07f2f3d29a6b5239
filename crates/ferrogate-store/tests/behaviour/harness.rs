//! One real database per test (`ferrogate_testkit::db`: a SQLite file in a temp dir, or a fresh
//! PostgreSQL database dropped afterwards), with a `Store` connected to it.

use ferrogate_store::{DbKind, Store, StoreOptions};
use ferrogate_testkit::TestDatabase;

pub struct TestDb {
    pub store: Store,
    /// For opening a second store on the same database (a second gateway instance).
    pub url: String,
    db: TestDatabase,
}

pub fn options() -> StoreOptions {
    StoreOptions { max_connections: 4, ..StoreOptions::default() }
}

impl TestDb {
    pub async fn open(kind: DbKind) -> TestDb {
        let db = TestDatabase::open(kind).await;
        let store = Store::connect_with(&db.url, &options()).await.unwrap();
        TestDb { store, url: db.url.clone(), db }
    }

    pub fn kind(&self) -> DbKind {
        self.store.kind()
    }

    /// Everything the database holds, as text (see `TestDatabase::everything_stored`).
    pub async fn everything_stored(&self) -> String {
        self.db.everything_stored().await
    }
}
