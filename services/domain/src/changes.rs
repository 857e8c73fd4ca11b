//! What changed in a household's plans, goals and agreements between two moments: each one
//! that came or changed, field by field, before and after. Who changed it is told by the events
//! between the moments (see [`crate::event::DomainEvent::subject`]); this module compares the
//! two states they lead to.

use crate::event::Subject;
use crate::state::Household;
use serde::Serialize;
use std::collections::BTreeMap;

/// One field of a plan, goal or agreement that differs between two moments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldChange {
    /// Its path, e.g. `title`, `terms.end`, `status`.
    pub field: String,
    /// Its value at the first moment; `None` when it had none (or the object did not exist).
    pub before: Option<String>,
    /// Its value at the second moment; `None` when it has none.
    pub after: Option<String>,
}

/// A plan, goal or agreement that came or changed between two moments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// What it is.
    pub subject: Subject,
    /// Its title at the second moment.
    pub title: String,
    /// It did not exist at the first moment.
    pub added: bool,
    /// The fields that differ, in path order; empty when it changed and changed back.
    pub fields: Vec<FieldChange>,
}

/// How `subject` differs between `before` and `after`; `None` when it exists in neither.
/// A subject that exists at both moments and is equal gives a change without fields (its events
/// still tell who touched it).
pub fn change(before: &Household, after: &Household, subject: Subject) -> Option<Change> {
    let (old, new) = (fields(before, subject), fields(after, subject)?);
    let title = title(after, subject).unwrap_or_default();
    let mut out = Vec::new();
    let empty = BTreeMap::new();
    let old_fields = old.as_ref().unwrap_or(&empty);
    for (field, value) in &new {
        if old_fields.get(field) != Some(value) {
            out.push(FieldChange {
                field: field.clone(),
                before: old_fields.get(field).cloned(),
                after: Some(value.clone()),
            });
        }
    }
    for (field, value) in old_fields {
        if !new.contains_key(field) {
            out.push(FieldChange {
                field: field.clone(),
                before: Some(value.clone()),
                after: None,
            });
        }
    }
    out.sort_by(|a, b| a.field.cmp(&b.field));
    Some(Change {
        subject,
        title,
        added: old.is_none(),
        fields: out,
    })
}

fn title(state: &Household, subject: Subject) -> Option<String> {
    match subject {
        Subject::Plan(id) => state.plans.get(&id).map(|p| p.title.clone()),
        Subject::Goal(id) => state.goals.get(&id).map(|g| g.title.clone()),
        Subject::Agreement(id) => state.agreements.get(&id).map(|a| a.terms.title.clone()),
    }
}

/// The fields of `subject` in `state`, by path, each value as text; `None` when it is not there.
fn fields(state: &Household, subject: Subject) -> Option<BTreeMap<String, String>> {
    match subject {
        Subject::Plan(id) => state.plans.get(&id).map(flatten),
        Subject::Goal(id) => state.goals.get(&id).map(flatten),
        Subject::Agreement(id) => state.agreements.get(&id).map(flatten),
    }
}

/// A value's fields by dotted path, as text: objects are walked into, lists of plain values are
/// joined with ", ", anything else is compact JSON; absent and empty values are left out.
fn flatten(value: &impl Serialize) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    // The state's types serialize to JSON without fail (plain fields, string-keyed maps), as
    // the projections that store them rely on; should one ever not, it shows no fields rather
    // than failing the read.
    if let Ok(json) = serde_json::to_value(value) {
        walk(String::new(), &json, &mut out);
    }
    out
}

fn walk(path: String, value: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    use serde_json::Value as V;
    let text = match value {
        V::Null => return,
        V::Object(fields) => {
            for (name, inner) in fields {
                let path = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                walk(path, inner, out);
            }
            return;
        }
        V::Array(items) if items.is_empty() => return,
        V::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            items.iter().map(plain).collect::<Vec<_>>().join(", ")
        }
        V::String(text) if text.is_empty() => return,
        other => plain(other),
    };
    out.insert(path, text);
}

fn plain(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{AgreementTerms, DomainEvent};
    use crate::ids::{AgreementId, GoalId};
    use crate::vocab::FundingDomain;
    use time::macros::date;

    fn terms(end: Option<time::Date>) -> AgreementTerms {
        AgreementTerms {
            title: "logeeropvang".into(),
            description: String::new(),
            parties: Vec::new(),
            responsible: None,
            funding: FundingDomain::Jeugdwet,
            pgb: false,
            start: date!(2026 - 01 - 01),
            end,
            frequency: Some("twee weekenden per maand".into()),
            goals: Vec::new(),
            review_on: None,
            plan: None,
        }
    }

    #[test]
    fn an_amended_end_date_and_an_acceptance_show_field_by_field() {
        let agreement = AgreementId::new();
        let mut before = Household::default();
        before.apply(&DomainEvent::AgreementProposed {
            agreement,
            terms: terms(None),
        });
        let mut after = before.clone();
        after.apply(&DomainEvent::AgreementAccepted { agreement });
        after.apply(&DomainEvent::AgreementAmended {
            agreement,
            terms: terms(Some(date!(2026 - 06 - 30))),
            reason: "tot de zomer".into(),
        });
        let amended = change(&before, &after, Subject::Agreement(agreement)).unwrap();
        assert!(!amended.added);
        assert_eq!(amended.title, "logeeropvang");
        assert_eq!(
            amended.fields,
            vec![
                FieldChange {
                    field: "status".into(),
                    before: Some("Proposed".into()),
                    after: Some("Accepted".into()),
                },
                FieldChange {
                    field: "terms.end".into(),
                    before: None,
                    after: Some("2026-06-30".into()),
                },
            ]
        );

        let new = change(&Household::default(), &after, Subject::Agreement(agreement)).unwrap();
        assert!(new.added);
        assert!(
            new.fields
                .iter()
                .any(|f| f.field == "terms.frequency" && f.before.is_none())
        );
        assert_eq!(
            change(&before, &after, Subject::Goal(GoalId::new())),
            None,
            "a goal neither state has"
        );
    }
}
