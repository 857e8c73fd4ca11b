//! The platforms' change feed (`PushService.SubscribeChanges`) over real gRPC against the real
//! `naast serve`: a PGO platform follows the households whose family granted it access, from a
//! cursor it keeps; others stay invisible; a revocation and an erasure say `withdrawn` once and
//! then nothing more; a platform that reconnects after an erasure still learns of it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_proto::pb;
use naast_tests::{Server, grant_platform, household_with_client, platform_changes, search_audit};

/// The development issuer.
const DEV_ISSUER: &str = "https://dev.naast.invalid";
/// The demo platform's client id (the `pgo` persona).
const PLATFORM: &str = "dev-pgo";

fn kinds(change: &pb::SubscribeChangesResponse) -> Vec<pb::ChangeKind> {
    change
        .kinds
        .iter()
        .map(|k| pb::ChangeKind::try_from(*k).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_follows_the_households_that_granted_it_and_is_told_of_withdrawals() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let mut api =
        pb::household_service_client::HouseholdServiceClient::new(server.signed("ouder").await);
    let mut consent =
        pb::consent_service_client::ConsentServiceClient::new(server.signed("ouder").await);
    let (granted, client, _) = household_with_client(&mut api, "Bakker").await;
    let (hidden, hidden_client, _) = household_with_client(&mut api, "De Vries").await;
    let (revoked, _, _) = household_with_client(&mut api, "Jansen").await;
    let (erased, _, _) = household_with_client(&mut api, "Visser").await;
    grant_platform(&mut consent, &granted, DEV_ISSUER, PLATFORM).await;
    let revoked_grant = grant_platform(&mut consent, &revoked, DEV_ISSUER, PLATFORM).await;
    grant_platform(&mut consent, &erased, DEV_ISSUER, PLATFORM).await;
    api.create_goal(pb::CreateGoalRequest {
        household_id: granted.clone(),
        owner_member_id: client.clone(),
        title: "zelf naar school fietsen".into(),
        life_domains: vec![pb::LifeDomain::Mobility as i32],
        ..Default::default()
    })
    .await
    .unwrap();
    api.create_goal(pb::CreateGoalRequest {
        household_id: hidden.clone(),
        owner_member_id: hidden_client,
        title: "niet voor het platform".into(),
        life_domains: vec![pb::LifeDomain::Housing as i32],
        ..Default::default()
    })
    .await
    .unwrap();

    // From the start: only the households that granted the platform, the whole history of
    // each from the grant on (what it may see now is decided event by event).
    let first = platform_changes(&server, None).await;
    let households: std::collections::BTreeSet<&str> =
        first.iter().map(|c| c.household_id.as_str()).collect();
    assert_eq!(
        households,
        [granted.as_str(), revoked.as_str(), erased.as_str()]
            .into_iter()
            .collect(),
        "{first:?}"
    );
    assert!(first.windows(2).all(|w| w[0].cursor < w[1].cursor));
    let goal = first
        .iter()
        .find(|c| c.household_id == granted && kinds(c).contains(&pb::ChangeKind::Goals))
        .expect("the goal is a change of the granted household");
    assert!(
        first
            .iter()
            .any(|c| kinds(c).contains(&pb::ChangeKind::Access))
    );
    let last = first.last().unwrap().cursor;

    // Revoked and erased: withdrawn, once; later writes in the revoked household stay unseen.
    consent
        .revoke_access(pb::RevokeAccessRequest {
            household_id: revoked.clone(),
            grant_id: revoked_grant,
            ..Default::default()
        })
        .await
        .unwrap();
    api.create_member(pb::CreateMemberRequest {
        household_id: revoked.clone(),
        details: Some(pb::MemberDetails {
            name: "Kees".into(),
            role: pb::MemberRole::Relative as i32,
            relation: pb::Relation::Sibling as i32,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    consent
        .erase_household(pb::EraseHouseholdRequest {
            household_id: erased.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let later = platform_changes(&server, Some(last)).await;
    assert!(later.iter().all(|c| c.cursor > last), "{later:?}");
    let withdrawn: Vec<&str> = later
        .iter()
        .filter(|c| kinds(c) == [pb::ChangeKind::Withdrawn])
        .map(|c| c.household_id.as_str())
        .collect();
    assert_eq!(withdrawn, [revoked.as_str(), erased.as_str()], "{later:?}");
    assert_eq!(later.len(), 2, "nothing after a withdrawal: {later:?}");

    // A platform catching up after the erasure learns of it from the tombstone alone.
    let again = platform_changes(&server, Some(goal.cursor)).await;
    let erased_changes: Vec<_> = again.iter().filter(|c| c.household_id == erased).collect();
    assert_eq!(erased_changes.len(), 1, "{again:?}");
    assert_eq!(kinds(erased_changes[0]), [pb::ChangeKind::Withdrawn]);

    // Only a platform follows the feed; what it was shown is in the family's access log.
    let mut parent = pb::push_service_client::PushServiceClient::new(server.signed("ouder").await);
    let refused = parent
        .subscribe_changes(pb::SubscribeChangesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let records = search_audit(
        server.signed("beheerder").await,
        pb::SearchAuditLogRequest {
            household_id: granted.clone(),
            ..Default::default()
        },
    )
    .await;
    assert!(
        records
            .iter()
            .any(|r| r.operation.ends_with("/SubscribeChanges")
                && r.user.as_ref().is_some_and(|u| u.subject == "dev-pgo")
                && r.basis.iter().any(|b| b.starts_with("grant:")))
    );
    let hidden_records = search_audit(
        server.signed("beheerder").await,
        pb::SearchAuditLogRequest {
            household_id: hidden,
            ..Default::default()
        },
    )
    .await;
    assert!(
        !hidden_records
            .iter()
            .any(|r| r.operation.ends_with("/SubscribeChanges")),
        "the platform was shown nothing of a household that granted it nothing"
    );
}
