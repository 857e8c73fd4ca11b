//! A restore into a database (`naast restore --storage`): the mark that keeps every other naast
//! process off the database until the restore has finished, and what the database must hold
//! (nothing of naast's) before one begins.
//!
//! The mark is a row of `naast_restoring`, written durably before the first record and removed
//! after the last. A restore cut short leaves it, and with it whatever it had written; the next
//! restore, seeing it, empties naast's tables and starts over.

use tokio_postgres::Client;

/// The tables of naast's data that exist from the migrations on; the audit log's years
/// (`naast_audit_<year>`) and the record of disclosed reports (`naast_disclosures`) are made when
/// first written.
const DATA_TABLES: [&str; 6] = [
    "naast_log",
    "naast_household_keys",
    "naast_master_key_check",
    "naast_erased_households",
    "naast_push",
    "naast_retired_logs",
];

/// The tables of naast's data made on demand that the database has: the audit log's years
/// (`naast_audit_` and digits) and the record of disclosed reports; any other table (a copy an
/// administrator made, say) is not naast's.
async fn made_later(client: &Client) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut tables: Vec<String> = crate::tables_starting(client, "naast_audit_")
        .await?
        .into_iter()
        .filter(|table| {
            table
                .strip_prefix("naast_audit_")
                .is_some_and(|year| !year.is_empty() && year.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    tables.extend(
        crate::tables_starting(client, "naast_disclosures")
            .await?
            .into_iter()
            .filter(|table| table == "naast_disclosures"),
    );
    Ok(tables)
}

/// Whether a restore into the database began and has not finished.
pub async fn unfinished(client: &Client) -> Result<bool, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT EXISTS (SELECT 1 FROM naast_restoring)", &[])
        .await?
        .get(0))
}

/// The tables of naast's data that hold any row, by name.
pub async fn tables_with_data(client: &Client) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut tables: Vec<String> = DATA_TABLES.iter().map(|t| (*t).to_owned()).collect();
    tables.extend(made_later(client).await?);
    let mut holding = Vec::new();
    for table in tables {
        // Names from the list above or of the form checked in `made_later`: lower-case
        // letters, digits and underscores, quoted all the same.
        let any: bool = client
            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM \"{table}\")"), &[])
            .await?
            .get(0);
        if any {
            holding.push(table);
        }
    }
    Ok(holding)
}

/// Writes the mark (durably: the connection's commits wait for the flush unless it was set
/// otherwise).
pub async fn mark(client: &Client) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(
            "SET synchronous_commit TO on; \
             INSERT INTO naast_restoring (one) VALUES (true) ON CONFLICT (one) DO NOTHING",
        )
        .await
}

/// Empties naast's tables of what a restore cut short wrote, in one transaction (the mark
/// stays).
pub async fn empty(client: &Client) -> Result<(), tokio_postgres::Error> {
    let quoted = |tables: &[String]| {
        tables
            .iter()
            .map(|table| format!("\"{table}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let dropped = made_later(client).await?;
    let truncated: Vec<String> = DATA_TABLES.iter().map(|t| (*t).to_owned()).collect();
    let mut statement = format!(
        "SET synchronous_commit TO on; BEGIN; TRUNCATE {};",
        quoted(&truncated)
    );
    if !dropped.is_empty() {
        statement.push_str(&format!(" DROP TABLE {};", quoted(&dropped)));
    }
    statement.push_str(" COMMIT");
    client.batch_execute(&statement).await
}

/// Removes the mark, durably: the restore has finished.
pub async fn finish(client: &Client) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute("SET synchronous_commit TO on; DELETE FROM naast_restoring")
        .await
}
