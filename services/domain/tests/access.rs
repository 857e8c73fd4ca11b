//! The access policy: owners, linked members, grants (person, organisation, platform) with their
//! domains and last days, parties to agreements, and the roles that never read a household.

#![allow(clippy::unwrap_used, clippy::expect_used)] // in tests a panic is a failed check

use naast_domain::access::{Action, Principal, ReadKind, authorize};
use naast_domain::ids::{AgreementId, ContactId, GoalId, GrantId, MemberId};
use naast_domain::testing::run;
use naast_domain::timeline::{EntryKind, TimelineEntry};
use naast_domain::vocab::*;
use naast_domain::{
    AgreementTerms, Command, ContactDetails, GrantTerms, Grantee, Household, Identity,
    MemberDetails, Party, decide,
};
use time::macros::date;

const ISSUER: &str = "https://login.example.nl";
const TODAY: time::Date = date!(2026 - 11 - 23);

fn id(subject: &str) -> Identity {
    Identity {
        issuer: ISSUER.into(),
        subject: subject.into(),
    }
}

fn person(subject: &str, role: PrincipalRole, organisation: Option<&str>) -> Principal {
    Principal {
        identity: id(subject),
        role,
        name: None,
        organisation: organisation.map(str::to_owned),
        client_id: Some("app".into()),
        acting_for: None,
    }
}

struct World {
    household: Household,
    mother: MemberId,
    father: MemberId,
    provider: ContactId,
    other_provider: ContactId,
    goal: GoalId,
    other_goal: GoalId,
    agreement: AgreementId,
    other_agreement: AgreementId,
}

fn world() -> World {
    let mut household = Household::default();
    run(
        &mut household,
        Command::RegisterHousehold {
            name: "Familie Jansen".into(),
            registered_by: Some(id("registrant")),
        },
    );
    let member = |name: &str, role, relation| MemberDetails {
        name: name.into(),
        role,
        relation,
        birth_date: None,
    };
    let (child, mother, father) = (MemberId::new(), MemberId::new(), MemberId::new());
    for (m, details) in [
        (child, member("Eva", MemberRole::Client, None)),
        (
            mother,
            member(
                "Ilse",
                MemberRole::LegalRepresentative,
                Some(Relation::Parent),
            ),
        ),
        (
            father,
            member("Joost", MemberRole::Relative, Some(Relation::Parent)),
        ),
    ] {
        run(&mut household, Command::AddMember { member: m, details });
    }
    for (m, subject) in [(mother, "ilse"), (father, "joost")] {
        run(
            &mut household,
            Command::LinkIdentity {
                party: Party::Member(m),
                identity: Some(id(subject)),
                organisation_id: None,
            },
        );
    }
    let (provider, other_provider) = (ContactId::new(), ContactId::new());
    for (c, name) in [(provider, "Thuiszorg"), (other_provider, "Logeerhuis")] {
        run(
            &mut household,
            Command::AddContact {
                contact: c,
                details: ContactDetails {
                    kind: ContactKind::CareProvider,
                    name: name.into(),
                    organisation: None,
                    supporter_kind: None,
                    institution_kind: None,
                },
            },
        );
    }
    run(
        &mut household,
        Command::LinkIdentity {
            party: Party::Contact(provider),
            identity: None,
            organisation_id: Some("AGB-1".into()),
        },
    );
    let (goal, other_goal) = (GoalId::new(), GoalId::new());
    for (g, domain) in [
        (goal, LifeDomain::PhysicalHealth),
        (other_goal, LifeDomain::Housing),
    ] {
        run(
            &mut household,
            Command::SetGoal {
                goal: g,
                owner: child,
                title: "doel".into(),
                description: String::new(),
                life_domains: vec![domain],
                plan: None,
            },
        );
    }
    let (agreement, other_agreement) = (AgreementId::new(), AgreementId::new());
    for (a, c, g, funding) in [
        (agreement, provider, goal, FundingDomain::Wlz),
        (
            other_agreement,
            other_provider,
            other_goal,
            FundingDomain::Wmo,
        ),
    ] {
        run(
            &mut household,
            Command::ProposeAgreement {
                agreement: a,
                terms: AgreementTerms {
                    title: "afspraak".into(),
                    description: String::new(),
                    parties: vec![Party::Contact(c)],
                    responsible: Some(c),
                    funding,
                    pgb: false,
                    start: date!(2026 - 01 - 01),
                    end: None,
                    frequency: None,
                    goals: vec![g],
                    review_on: None,
                    plan: None,
                },
            },
        );
    }
    World {
        household,
        mother,
        father,
        provider,
        other_provider,
        goal,
        other_goal,
        agreement,
        other_agreement,
    }
}

fn grant(w: &mut World, grantee: Grantee, terms: GrantTerms) -> GrantId {
    let grant = GrantId::new();
    run(
        &mut w.household,
        Command::GrantAccess {
            grant,
            grantee,
            terms,
            request: None,
        },
    );
    grant
}

fn terms(scopes: &[AccessScope]) -> GrantTerms {
    GrantTerms {
        scopes: scopes.to_vec(),
        life_domains: Vec::new(),
        funding_domains: Vec::new(),
        until: None,
    }
}

fn entry(life: &[LifeDomain], funding: &[FundingDomain]) -> TimelineEntry {
    TimelineEntry {
        kind: EntryKind::Note,
        date: TODAY,
        summary: String::new(),
        members: Vec::new(),
        life_domains: life.to_vec(),
        funding_domains: funding.to_vec(),
    }
}

#[test]
fn owners_do_everything_and_others_only_what_is_granted() {
    // The registrant owns a household until its owners are linked …
    let mut fresh = Household::default();
    run(
        &mut fresh,
        Command::RegisterHousehold {
            name: "Familie Jansen".into(),
            registered_by: Some(id("registrant")),
        },
    );
    let registrant = person("registrant", PrincipalRole::Citizen, None);
    let access = authorize(&fresh, &registrant, Action::Own, TODAY).unwrap();
    assert_eq!(access.basis, ["owner:registrant"]);
    assert!(access.view.is_everything());
    // … from then on ownership follows the linked clients and legal representatives.
    let mut w = world();
    let h = &w.household;
    assert!(authorize(h, &registrant, Action::Own, TODAY).is_err());
    let access = authorize(
        h,
        &person("ilse", PrincipalRole::Citizen, None),
        Action::Own,
        TODAY,
    )
    .unwrap();
    assert_eq!(access.basis, [format!("owner:member:{}", w.mother)]);
    assert!(access.view.is_everything());
    // An organisation claim counts only on a professional's or supporter's token.
    let citizen_with_org = person("c", PrincipalRole::Citizen, Some("AGB-1"));
    assert!(authorize(h, &citizen_with_org, Action::Respond(w.agreement), TODAY).is_err());
    // A linked relative is no owner: nothing without a grant.
    let joost = person("joost", PrincipalRole::Citizen, None);
    assert!(authorize(h, &joost, Action::Read(ReadKind::Timeline), TODAY).is_err());
    assert!(authorize(h, &joost, Action::Own, TODAY).is_err());
    // Unlinking the mother takes her ownership away.
    let mother = w.mother;
    run(
        &mut w.household,
        Command::LinkIdentity {
            party: Party::Member(mother),
            identity: None,
            organisation_id: None,
        },
    );
    let ilse = person("ilse", PrincipalRole::Citizen, None);
    assert!(authorize(&w.household, &ilse, Action::Own, TODAY).is_err());
    // With no owner linked any more, the registrant does not get the household back.
    assert!(authorize(&w.household, &registrant, Action::Own, TODAY).is_err());
    // One identity links to one member only.
    let father = w.father;
    let refused = decide(
        &w.household,
        Command::LinkIdentity {
            party: Party::Member(mother),
            identity: Some(id("joost")),
            organisation_id: None,
        },
    )
    .unwrap_err();
    assert!(refused.to_string().contains("identity"), "{refused}");
    let _ = father;

    // A grant gives exactly its scopes, until its last day, and not after revocation.
    let g = grant(
        &mut w,
        Grantee::Person {
            identity: id("joost"),
        },
        GrantTerms {
            until: Some(TODAY),
            ..terms(&[AccessScope::ReadTimeline, AccessScope::WriteGoalsNotes])
        },
    );
    let h = &w.household;
    let access = authorize(h, &joost, Action::Read(ReadKind::Timeline), TODAY).unwrap();
    assert_eq!(access.basis, [format!("grant:{g}")]);
    assert!(
        authorize(
            h,
            &joost,
            Action::Write(AccessScope::WriteGoalsNotes),
            TODAY
        )
        .is_ok()
    );
    assert!(authorize(h, &joost, Action::Write(AccessScope::KeepLogbook), TODAY).is_err());
    let tomorrow = TODAY.next_day().unwrap();
    assert!(authorize(h, &joost, Action::Read(ReadKind::Timeline), tomorrow).is_err());
    run(
        &mut w.household,
        Command::RevokeAccess {
            grant: g,
            reason: String::new(),
        },
    );
    assert!(
        authorize(
            &w.household,
            &joost,
            Action::Read(ReadKind::Timeline),
            TODAY
        )
        .is_err()
    );
}

#[test]
fn domains_limit_what_a_reader_sees() {
    let mut w = world();
    grant(
        &mut w,
        Grantee::Organisation { id: "MEE".into() },
        GrantTerms {
            life_domains: vec![LifeDomain::Housing],
            ..terms(&[AccessScope::ReadTimeline])
        },
    );
    // Anyone of the organisation, not only one person.
    let supporter = person("s", PrincipalRole::Supporter, Some("MEE"));
    let h = &w.household;
    let view = authorize(h, &supporter, Action::Read(ReadKind::Timeline), TODAY)
        .unwrap()
        .view;
    assert!(view.entry(&entry(&[LifeDomain::Housing], &[])));
    assert!(!view.entry(&entry(&[LifeDomain::PhysicalHealth], &[])));
    assert!(
        !view.entry(&entry(&[], &[])),
        "no domain: not within the grant"
    );
    assert!(!view.plans());
    assert!(view.goal(h, w.other_goal, &h.goals[&w.other_goal], TODAY));
    assert!(!view.goal(h, w.goal, &h.goals[&w.goal], TODAY));
    assert!(view.agreement(h, &h.agreements[&w.other_agreement], TODAY));
    assert!(!view.agreement(h, &h.agreements[&w.agreement], TODAY));
    // The household's names and network need a whole-timeline grant.
    assert!(authorize(h, &supporter, Action::Read(ReadKind::Household), TODAY).is_err());
    // Funding domains limit too.
    grant(
        &mut w,
        Grantee::Person { identity: id("w") },
        GrantTerms {
            funding_domains: vec![FundingDomain::Wlz],
            ..terms(&[AccessScope::ReadTimeline])
        },
    );
    let h = &w.household;
    let wlz = authorize(
        h,
        &person("w", PrincipalRole::Supporter, None),
        Action::Read(ReadKind::Agreements),
        TODAY,
    )
    .unwrap()
    .view;
    assert!(wlz.agreement(h, &h.agreements[&w.agreement], TODAY));
    assert!(!wlz.agreement(h, &h.agreements[&w.other_agreement], TODAY));
    assert!(wlz.entry(&entry(&[LifeDomain::Housing], &[FundingDomain::Wlz])));
    assert!(!wlz.entry(&entry(&[LifeDomain::Housing], &[FundingDomain::Wmo])));
}

#[test]
fn a_provider_sees_its_own_agreements_and_nothing_else() {
    let w = world();
    let h = &w.household;
    let professional = person("p", PrincipalRole::Professional, Some("AGB-1"));
    let view = authorize(h, &professional, Action::Read(ReadKind::Agreements), TODAY)
        .unwrap()
        .view;
    assert!(view.agreement(h, &h.agreements[&w.agreement], TODAY));
    assert!(!view.agreement(h, &h.agreements[&w.other_agreement], TODAY));
    assert!(view.goal(h, w.goal, &h.goals[&w.goal], TODAY));
    assert!(!view.goal(h, w.other_goal, &h.goals[&w.other_goal], TODAY));
    let access = authorize(h, &professional, Action::Respond(w.agreement), TODAY).unwrap();
    assert_eq!(access.basis, [format!("party:{}", w.provider)]);
    assert!(authorize(h, &professional, Action::Respond(w.other_agreement), TODAY).is_err());
    assert!(authorize(h, &professional, Action::Read(ReadKind::Timeline), TODAY).is_err());
    assert!(
        authorize(
            h,
            &professional,
            Action::Write(AccessScope::ProposeAgreements),
            TODAY
        )
        .is_err()
    );
    // Another organisation is no party.
    let stranger = person("q", PrincipalRole::Professional, Some("AGB-2"));
    assert!(authorize(h, &stranger, Action::Respond(w.agreement), TODAY).is_err());
    let _ = w.other_provider;
}

#[test]
fn a_platform_does_what_both_it_and_its_member_may() {
    let mut w = world();
    let platform = |acting_for: &str| Principal {
        identity: id("pgo"),
        role: PrincipalRole::Platform,
        name: None,
        organisation: None,
        client_id: Some("pgo-app".into()),
        acting_for: Some(id(acting_for)),
    };
    let read = Action::Read(ReadKind::Timeline);
    // The member may, the platform is not yet allowed.
    assert!(authorize(&w.household, &platform("ilse"), read, TODAY).is_err());
    grant(
        &mut w,
        Grantee::Platform {
            issuer: ISSUER.into(),
            client_id: "pgo-app".into(),
        },
        GrantTerms {
            life_domains: vec![LifeDomain::Housing],
            ..terms(&[AccessScope::ReadTimeline])
        },
    );
    let h = &w.household;
    let view = authorize(h, &platform("ilse"), read, TODAY).unwrap().view;
    assert!(view.entry(&entry(&[LifeDomain::Housing], &[])));
    assert!(
        !view.entry(&entry(&[LifeDomain::Safety], &[])),
        "the platform's grant limits the owner's view"
    );
    // The platform is allowed, the member it acts for is not.
    assert!(authorize(h, &platform("joost"), read, TODAY).is_err());
    assert!(authorize(h, &platform("nobody"), read, TODAY).is_err());
    let mut anonymous = platform("ilse");
    anonymous.acting_for = None;
    assert!(authorize(h, &anonymous, read, TODAY).is_err());
}

#[test]
fn evaluators_and_administrators_never_read_a_household() {
    let w = world();
    for role in [PrincipalRole::Evaluator, PrincipalRole::Administrator] {
        let who = person("registrant", role, None);
        for action in [
            Action::Read(ReadKind::Timeline),
            Action::Read(ReadKind::Household),
            Action::Own,
            Action::RequestAccess,
        ] {
            assert!(
                authorize(&w.household, &who, action, TODAY).is_err(),
                "{role:?} {action:?}"
            );
        }
    }
    // Registration: a citizen (or a platform for one), not a supporter.
    let empty = Household::default();
    assert!(
        authorize(
            &empty,
            &person("x", PrincipalRole::Citizen, None),
            Action::Register,
            TODAY
        )
        .is_ok()
    );
    assert!(
        authorize(
            &empty,
            &person("x", PrincipalRole::Supporter, None),
            Action::Register,
            TODAY
        )
        .is_err()
    );
    // An unknown household is refused like one the caller may not see.
    let refused = authorize(
        &empty,
        &person("x", PrincipalRole::Citizen, None),
        Action::Read(ReadKind::Timeline),
        TODAY,
    )
    .unwrap_err();
    let hidden = authorize(
        &w.household,
        &person("x", PrincipalRole::Citizen, None),
        Action::Read(ReadKind::Timeline),
        TODAY,
    )
    .unwrap_err();
    assert_eq!(refused, hidden);
}

#[test]
fn a_grant_limited_to_some_life_domains_writes_about_those_only() {
    use naast_domain::access::authorize_command;
    let mut w = world();
    grant(
        &mut w,
        Grantee::Person { identity: id("s") },
        GrantTerms {
            life_domains: vec![LifeDomain::Housing],
            ..terms(&[AccessScope::ReadTimeline, AccessScope::WriteGoalsNotes])
        },
    );
    let supporter = person("s", PrincipalRole::Supporter, None);
    let h = &w.household;
    let note = |domains: &[LifeDomain]| Command::AddNote {
        note: naast_domain::ids::EntryId::new(),
        about: None,
        text: "notitie".into(),
        life_domains: domains.to_vec(),
    };
    assert!(authorize_command(h, &supporter, &note(&[LifeDomain::Housing]), TODAY).is_ok());
    let refused =
        authorize_command(h, &supporter, &note(&[LifeDomain::PhysicalHealth]), TODAY).unwrap_err();
    assert!(refused.reason.contains("wonen"), "{refused}");
    assert!(authorize_command(h, &supporter, &note(&[]), TODAY).is_err());
    // A goal outside the grant can be neither updated nor moved into it.
    let achieve = |goal| Command::AchieveGoal {
        goal,
        on: TODAY,
        note: String::new(),
    };
    assert!(authorize_command(h, &supporter, &achieve(w.other_goal), TODAY).is_ok());
    assert!(authorize_command(h, &supporter, &achieve(w.goal), TODAY).is_err());
    let move_into_view = Command::UpdateGoal {
        goal: w.goal,
        title: "verhuisd".into(),
        description: String::new(),
        life_domains: vec![LifeDomain::Housing],
        plan: None,
    };
    assert!(authorize_command(h, &supporter, &move_into_view, TODAY).is_err());
    // Owners write anywhere.
    let owner = person("ilse", PrincipalRole::Citizen, None);
    assert!(authorize_command(h, &owner, &note(&[LifeDomain::Safety]), TODAY).is_ok());
}

/// Whoever comes to see a household comes in by an event `may_let_in` names (a reader that
/// follows who may see what looks again only after those): registered, linked as an owner or a
/// provider's organisation, granted as a person or an organisation, or made legal
/// representative.
#[test]
fn everyone_who_comes_in_comes_in_by_an_event_that_may_let_in() {
    use naast_domain::access::may_let_in;
    let principals = [
        person("registrant", PrincipalRole::Citizen, None),
        person("ilse", PrincipalRole::Citizen, None),
        person("joost", PrincipalRole::Citizen, None),
        person("coach", PrincipalRole::Supporter, None),
        person("arts", PrincipalRole::Professional, Some("AGB-1")),
        person("verpleger", PrincipalRole::Professional, Some("AGB-2")),
    ];
    let (mother, father, provider) = (MemberId::new(), MemberId::new(), ContactId::new());
    let member = |name: &str, role| MemberDetails {
        name: name.into(),
        role,
        relation: Some(Relation::Parent),
        birth_date: None,
    };
    let commands = vec![
        Command::RegisterHousehold {
            name: "Familie Jansen".into(),
            registered_by: Some(id("registrant")),
        },
        Command::AddMember {
            member: mother,
            details: member("Ilse", MemberRole::LegalRepresentative),
        },
        Command::AddMember {
            member: father,
            details: member("Joost", MemberRole::Relative),
        },
        Command::LinkIdentity {
            party: Party::Member(father),
            identity: Some(id("joost")),
            organisation_id: None,
        },
        Command::LinkIdentity {
            party: Party::Member(mother),
            identity: Some(id("ilse")),
            organisation_id: None,
        },
        Command::UpdateMember {
            member: father,
            details: member("Joost", MemberRole::LegalRepresentative),
        },
        Command::AddContact {
            contact: provider,
            details: ContactDetails {
                kind: ContactKind::CareProvider,
                name: "Thuiszorg".into(),
                organisation: None,
                supporter_kind: None,
                institution_kind: None,
            },
        },
        Command::LinkIdentity {
            party: Party::Contact(provider),
            identity: None,
            organisation_id: Some("AGB-1".into()),
        },
        Command::GrantAccess {
            grant: GrantId::new(),
            grantee: Grantee::Person {
                identity: id("coach"),
            },
            terms: terms(&[AccessScope::ReadTimeline]),
            request: None,
        },
        Command::GrantAccess {
            grant: GrantId::new(),
            grantee: Grantee::Organisation { id: "AGB-2".into() },
            terms: terms(&[AccessScope::ReadTimeline]),
            request: None,
        },
    ];
    // The timeline (a caseload), or the agreements a provider is party to.
    let reads = |state: &Household, p: &Principal| {
        [ReadKind::Timeline, ReadKind::Agreements]
            .into_iter()
            .any(|kind| authorize(state, p, Action::Read(kind), TODAY).is_ok())
    };
    let mut state = Household::default();
    let mut came_in = Vec::new();
    for command in commands {
        for event in decide(&state, command).unwrap() {
            let before: Vec<bool> = principals.iter().map(|p| reads(&state, p)).collect();
            state.apply(&event);
            for (p, was) in principals.iter().zip(before) {
                if !was && reads(&state, p) {
                    assert!(
                        may_let_in(event.event_type()),
                        "{} came in by {}",
                        p.identity.subject,
                        event.event_type()
                    );
                    came_in.push(p.identity.subject.clone());
                }
            }
        }
    }
    came_in.sort();
    assert_eq!(
        came_in,
        ["arts", "coach", "ilse", "joost", "registrant", "verpleger"],
        "each came in once"
    );
}
