//! What a platform should hold of one household, and each resource as it is written there.
//!
//! The resources are the FHIR facade's, decided by the family's grants to the platform alone
//! ([`Sight::of_platform`]): a platform is sent exactly what it could read on the facade with
//! those grants, never more. On the platform's server the resources get that server's ids, so
//! references are rewritten: to the server's id of a resource already written there, or, for
//! one the platform is not sent (or not yet), to a logical reference by naast's identifier
//! without the display text.

use crate::endpoint::{Endpoint, PUSHED_TYPES};
use naast_domain::Household;
use naast_domain::ids::{HouseholdId, PlanId};
use naast_fhir::MapError;
use naast_fhir_http::resources::{self, Kind, Sight, Unseen};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// One resource the platform should hold.
#[derive(Clone, Debug)]
pub struct Wanted {
    /// Its type.
    pub resource_type: &'static str,
    /// naast's id of it.
    pub id: Uuid,
    /// The facade's JSON of it.
    pub json: Value,
    /// The grants that allow sending it (for the audit record).
    pub basis: Vec<String>,
}

/// A resource's place: its type and naast's id.
pub type Key = (String, Uuid);

/// Every resource of `household` the endpoint's platform should hold on `today` (of those in
/// `only`, if given), in the order they are written: [`PUSHED_TYPES`], plans before
/// agreements, then by id.
pub fn wanted(
    endpoint: &Endpoint,
    household: HouseholdId,
    state: &Household,
    today: time::Date,
    only: Option<&HashSet<Key>>,
) -> Result<Vec<Wanted>, MapError> {
    let sight = Sight::of_platform(
        state,
        &endpoint.platform.issuer,
        &endpoint.platform.client_id,
        today,
    );
    if sight.is_blind() {
        return Ok(Vec::new());
    }
    let basis = naast_domain::access::platform_grants(
        state,
        &endpoint.platform.issuer,
        &endpoint.platform.client_id,
        today,
    );
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| PUSHED_TYPES.contains(&k.name()) && endpoint.takes(k.name()))
        .collect();
    let found = match only {
        None => resources::visible(household, state, &kinds, &sight, today)?,
        Some(keys) => {
            let mut found = Vec::new();
            for (resource_type, id) in keys {
                let Some(kind) = Kind::parse(resource_type).filter(|k| kinds.contains(k)) else {
                    continue;
                };
                match resources::one(household, state, kind, *id, &sight, today) {
                    Ok(resource) => found.push((kind, *id, resource)),
                    Err(Unseen::Map(e)) => return Err(e),
                    Err(Unseen::Missing | Unseen::Denied(_)) => {}
                }
            }
            found
        }
    };
    let mut out = Vec::new();
    for (kind, id, resource) in found {
        let json = serde_json::to_value(&resource).map_err(|e| MapError::Build {
            resource: kind.name(),
            reason: e.to_string(),
        })?;
        out.push(Wanted {
            resource_type: kind.name(),
            id,
            json,
            basis: basis.clone(),
        });
    }
    let rank = |w: &Wanted| {
        let order = PUSHED_TYPES
            .iter()
            .position(|t| *t == w.resource_type)
            .unwrap_or(PUSHED_TYPES.len());
        let agreement = w.resource_type == "CarePlan" && !state.plans.contains_key(&PlanId(w.id));
        (order, agreement, w.id)
    };
    out.sort_by_key(rank);
    Ok(out)
}

/// The body written for `wanted`: without naast's id and version (the server keeps its own),
/// claiming the endpoint's profile for its type if one is configured, its references rewritten
/// to the server's ids in `remotes` of resources the platform holds.
pub fn body(endpoint: &Endpoint, wanted: &Wanted, remotes: &HashMap<Key, String>) -> Value {
    let mut json = wanted.json.clone();
    if let Value::Object(resource) = &mut json {
        resource.remove("id");
        let mut meta_empty = false;
        if let Some(Value::Object(meta)) = resource.get_mut("meta") {
            meta.remove("versionId");
            meta.remove("lastUpdated");
            if let Some(profile) = endpoint.profiles.get(wanted.resource_type) {
                meta.insert("profile".into(), Value::from(vec![profile.clone()]));
            }
            meta_empty = meta.is_empty();
        } else if let Some(profile) = endpoint.profiles.get(wanted.resource_type) {
            let mut meta = Map::new();
            meta.insert("profile".into(), Value::from(vec![profile.clone()]));
            resource.insert("meta".into(), Value::Object(meta));
        }
        if meta_empty {
            resource.remove("meta");
        }
    }
    rewrite_references(&mut json, remotes);
    json
}

/// SHA-256 (hex) of a body as written.
pub fn hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Adds to `out` every resource `value` refers to (`Type/id` references to naast's ids).
pub fn referenced(value: &Value, out: &mut HashSet<Key>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| referenced(item, out)),
        Value::Object(object) => {
            if let Some(Value::String(reference)) = object.get("reference")
                && let Some(target) = parse_reference(reference)
            {
                out.insert(target);
            }
            object.values().for_each(|item| referenced(item, out));
        }
        _ => {}
    }
}

fn rewrite_references(value: &mut Value, remotes: &HashMap<Key, String>) {
    match value {
        Value::Array(items) => {
            for item in items {
                rewrite_references(item, remotes);
            }
        }
        Value::Object(object) => {
            let target = match object.get("reference") {
                Some(Value::String(reference)) => parse_reference(reference),
                _ => None,
            };
            if let Some((resource_type, id)) = target {
                match remotes.get(&(resource_type.clone(), id)) {
                    Some(remote) => {
                        object.insert(
                            "reference".into(),
                            Value::String(format!("{resource_type}/{remote}")),
                        );
                    }
                    None => {
                        object.remove("reference");
                        object.remove("display");
                        object.insert("type".into(), Value::String(resource_type));
                        object.insert(
                            "identifier".into(),
                            serde_json::json!({
                                "system": naast_fhir::UUID_SYSTEM,
                                "value": format!("urn:uuid:{id}"),
                            }),
                        );
                    }
                }
            }
            for (_, item) in object.iter_mut() {
                rewrite_references(item, remotes);
            }
        }
        _ => {}
    }
}

/// `Type/uuid` → its parts.
fn parse_reference(reference: &str) -> Option<(String, Uuid)> {
    let (resource_type, id) = reference.split_once('/')?;
    if !resource_type.starts_with(|c: char| c.is_ascii_uppercase()) {
        return None;
    }
    Some((resource_type.to_owned(), Uuid::parse_str(id).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::{Auth, EndpointKind, Platform};

    fn endpoint() -> Endpoint {
        Endpoint {
            name: "jo".into(),
            kind: EndpointKind::Fhir,
            url: "http://h/fhir".into(),
            platform: Platform {
                issuer: "i".into(),
                client_id: "c".into(),
            },
            auth: Auth::None,
            secret_file: None,
            resource_types: Vec::new(),
            profiles: [("Goal".to_owned(), "http://kt/Goal".to_owned())].into(),
            timeout_seconds: 1,
            max_backoff_seconds: 1,
            concurrency: 1,
        }
    }

    #[test]
    fn references_point_at_the_servers_ids_or_at_naasts_identifier() {
        let (patient, plan) = (Uuid::now_v7(), Uuid::now_v7());
        let wanted = Wanted {
            resource_type: "Goal",
            id: Uuid::now_v7(),
            json: serde_json::json!({
                "resourceType": "Goal",
                "id": "x",
                "meta": {"versionId": "3", "lastUpdated": "2026-01-01T00:00:00Z",
                         "profile": ["http://nictiz.nl/fhir/StructureDefinition/nl-core-TreatmentObjective"]},
                "subject": {"reference": format!("Patient/{patient}"), "display": "Sanne"},
                "addresses": [{"reference": format!("CarePlan/{plan}"), "display": "Plan"}],
            }),
            basis: Vec::new(),
        };
        let remotes = HashMap::from([(("Patient".to_owned(), patient), "p-1".to_owned())]);
        let body = body(&endpoint(), &wanted, &remotes);
        assert_eq!(body.get("id"), None);
        assert_eq!(
            body["meta"],
            serde_json::json!({"profile": ["http://kt/Goal"]})
        );
        assert_eq!(
            body["subject"],
            serde_json::json!({"reference": "Patient/p-1", "display": "Sanne"})
        );
        assert_eq!(
            body["addresses"][0],
            serde_json::json!({"type": "CarePlan", "identifier": {
                "system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{plan}")}})
        );
    }
}
