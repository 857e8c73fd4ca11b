//! `naast demo`: starts the server, enacts the five scenarios of the pilots through the public
//! gRPC API, and prints each family's unified timeline grouped by date with its funding domains.
//! The families are fictional, modelled on the pilots' portraits.

use crate::grpc::convert::Vocabulary;
use naast_proto::pb;
use naast_proto::pb::household_service_client::HouseholdServiceClient;
use pb::party::Party as P;
use std::collections::BTreeMap;
use tonic::transport::Channel;

type Api = HouseholdServiceClient<naast_proto::client::Signed>;
type Consent =
    naast_proto::pb::consent_service_client::ConsentServiceClient<naast_proto::client::Signed>;

/// The demo's connections: commands and consent, signed in as the parent persona.
#[derive(Clone)]
struct Clients {
    households: Api,
    consent: Consent,
}
type DemoResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// One household being enacted.
struct Family {
    api: Api,
    consent: Consent,
    household: String,
    /// The day in the story: what happens next is recorded as having happened on it.
    day: String,
}

fn member_id(id: &str) -> pb::Party {
    pb::Party {
        party: Some(P::MemberId(id.to_owned())),
    }
}

fn contact_id(id: &str) -> pb::Party {
    pb::Party {
        party: Some(P::ContactId(id.to_owned())),
    }
}

impl Family {
    async fn register(clients: &Clients, name: &str, day: &str) -> DemoResult<Self> {
        let mut family = Self {
            api: clients.households.clone(),
            consent: clients.consent.clone(),
            household: String::new(),
            day: day.into(),
        };
        family.household = family
            .api
            .create_household(pb::CreateHouseholdRequest {
                name: name.into(),
                options: family.opts(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .household_id;
        Ok(family)
    }

    /// Moves the story to `day`.
    fn on(&mut self, day: &str) -> &mut Self {
        self.day = day.into();
        self
    }

    fn opts(&self) -> Option<pb::CommandOptions> {
        Some(pb::CommandOptions {
            effective_date: self.day.clone(),
            ..Default::default()
        })
    }

    async fn member(
        &mut self,
        name: &str,
        role: pb::MemberRole,
        relation: pb::Relation,
        birth_date: &str,
    ) -> DemoResult<String> {
        let request = pb::CreateMemberRequest {
            household_id: self.household.clone(),
            options: self.opts(),
            details: Some(pb::MemberDetails {
                name: name.into(),
                role: role as i32,
                relation: relation as i32,
                birth_date: birth_date.into(),
            }),
            ..Default::default()
        };
        Ok(self
            .api
            .create_member(request)
            .await?
            .into_inner()
            .member_id)
    }

    /// Adds the family's supporter, who signs in as the demo's supporter persona, and gives
    /// them what a supporter needs: reading the timeline, goals and notes, the logbook, the
    /// network and the plans.
    async fn supporter(
        &mut self,
        name: &str,
        kind: pb::SupporterKind,
        organisation: &str,
    ) -> DemoResult<String> {
        let contact = self
            .contact(pb::ContactDetails {
                kind: pb::ContactKind::Supporter as i32,
                name: name.into(),
                organisation: organisation.into(),
                supporter_kind: kind as i32,
                ..Default::default()
            })
            .await?;
        let persona = crate::auth::dev::Persona::named("ondersteuner")
            .ok_or("the demo persona `ondersteuner` is missing")?;
        let identity = pb::Identity {
            issuer: crate::auth::dev::DEV_ISSUER.into(),
            subject: persona.subject.into(),
        };
        self.consent
            .link_identity(pb::LinkIdentityRequest {
                household_id: self.household.clone(),
                options: self.opts(),
                party: Some(pb::link_identity_request::Party::ContactId(contact.clone())),
                identity: Some(identity.clone()),
                ..Default::default()
            })
            .await?;
        use pb::AccessScope as S;
        self.consent
            .grant_access(pb::GrantAccessRequest {
                household_id: self.household.clone(),
                options: self.opts(),
                grantee: Some(pb::Grantee {
                    kind: Some(pb::grantee::Kind::Person(identity)),
                }),
                terms: Some(pb::GrantTerms {
                    scopes: [
                        S::ReadTimeline,
                        S::WriteGoalsNotes,
                        S::KeepLogbook,
                        S::ManageNetwork,
                        S::ManagePlans,
                    ]
                    .map(|s| s as i32)
                    .to_vec(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await?;
        Ok(contact)
    }

    async fn provider(&mut self, name: &str) -> DemoResult<String> {
        self.contact(pb::ContactDetails {
            kind: pb::ContactKind::CareProvider as i32,
            name: name.into(),
            ..Default::default()
        })
        .await
    }

    async fn institution(&mut self, name: &str, kind: pb::InstitutionKind) -> DemoResult<String> {
        self.contact(pb::ContactDetails {
            kind: pb::ContactKind::Institution as i32,
            name: name.into(),
            institution_kind: kind as i32,
            ..Default::default()
        })
        .await
    }

    async fn contact(&mut self, details: pb::ContactDetails) -> DemoResult<String> {
        let request = pb::CreateContactRequest {
            household_id: self.household.clone(),
            options: self.opts(),
            details: Some(details),
            ..Default::default()
        };
        Ok(self
            .api
            .create_contact(request)
            .await?
            .into_inner()
            .contact_id)
    }

    async fn phase(&mut self, phase: pb::SupportPhase, hours: u32, date: &str) -> DemoResult<()> {
        let request = pb::ChangeSupportPhaseRequest {
            household_id: self.household.clone(),
            options: self.opts(),
            phase: phase as i32,
            hours_per_week: Some(hours),
            date: date.into(),
            // The pilots keep monthly contact in the pilot-light phase.
            contact_every_days: (phase == pb::SupportPhase::PilotLight).then_some(31),
        };
        self.api.change_support_phase(request).await?;
        Ok(())
    }

    async fn plan(&mut self, kind: pb::PlanKind, title: &str, date: &str) -> DemoResult<String> {
        let plan = self
            .api
            .create_plan(pb::CreatePlanRequest {
                household_id: self.household.clone(),
                options: self.opts(),
                kind: kind as i32,
                title: title.into(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .plan_id;
        self.api
            .activate_plan(pb::ActivatePlanRequest {
                household_id: self.household.clone(),
                options: self.opts(),
                plan_id: plan.clone(),
                date: date.into(),
            })
            .await?;
        Ok(plan)
    }

    async fn goal(
        &mut self,
        owner: &str,
        title: &str,
        domains: &[pb::LifeDomain],
        plan: &str,
    ) -> DemoResult<String> {
        let request = pb::CreateGoalRequest {
            household_id: self.household.clone(),
            options: self.opts(),
            owner_member_id: owner.into(),
            title: title.into(),
            life_domains: domains.iter().map(|d| *d as i32).collect(),
            plan_id: plan.into(),
            ..Default::default()
        };
        Ok(self.api.create_goal(request).await?.into_inner().goal_id)
    }

    async fn achieve(&mut self, goal: &str, date: &str) -> DemoResult<()> {
        let request = pb::AchieveGoalRequest {
            household_id: self.household.clone(),
            options: self.opts(),
            goal_id: goal.into(),
            date: date.into(),
            ..Default::default()
        };
        self.api.achieve_goal(request).await?;
        Ok(())
    }

    async fn progress(&mut self, goal: &str, date: &str, note: &str) -> DemoResult<()> {
        let request = pb::NoteGoalProgressRequest {
            household_id: self.household.clone(),
            options: self.opts(),
            goal_id: goal.into(),
            date: date.into(),
            note: note.into(),
        };
        self.api.note_goal_progress(request).await?;
        Ok(())
    }

    /// Proposes and accepts an agreement.
    async fn agreement(&mut self, terms: pb::AgreementTerms) -> DemoResult<String> {
        let agreement = self
            .api
            .propose_agreement(pb::ProposeAgreementRequest {
                household_id: self.household.clone(),
                options: self.opts(),
                terms: Some(terms),
                ..Default::default()
            })
            .await?
            .into_inner()
            .agreement_id;
        self.api
            .accept_agreement(pb::AcceptAgreementRequest {
                household_id: self.household.clone(),
                options: self.opts(),
                agreement_id: agreement.clone(),
            })
            .await?;
        Ok(agreement)
    }

    async fn indication(
        &mut self,
        member: &str,
        kind: pb::IndicationKind,
        profile: &str,
        from: &str,
        until: &str,
    ) -> DemoResult<()> {
        let request = pb::RecordIndicationRequest {
            household_id: self.household.clone(),
            options: self.opts(),
            member_id: member.into(),
            kind: kind as i32,
            care_profile: profile.into(),
            valid_from: from.into(),
            valid_until: until.into(),
            ..Default::default()
        };
        self.api.record_indication(request).await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)] // a logbook entry has this many parts
    async fn logbook(
        &mut self,
        supporter: &str,
        date: &str,
        minutes: u32,
        mode: pb::ContactMode,
        tasks: &[pb::SupporterTask],
        domains: &[pb::LifeDomain],
        summary: &str,
    ) -> DemoResult<()> {
        let request = pb::CreateLogbookEntryRequest {
            household_id: self.household.clone(),
            options: self.opts(),
            supporter_contact_id: supporter.into(),
            date: date.into(),
            minutes,
            contact_mode: mode as i32,
            tasks: tasks.iter().map(|t| *t as i32).collect(),
            life_domains: domains.iter().map(|d| *d as i32).collect(),
            summary: summary.into(),
            ..Default::default()
        };
        self.api.create_logbook_entry(request).await?;
        Ok(())
    }

    async fn note(
        &mut self,
        about: &str,
        text: &str,
        domains: &[pb::LifeDomain],
    ) -> DemoResult<()> {
        let request = pb::CreateNoteRequest {
            household_id: self.household.clone(),
            options: self.opts(),
            about_member_id: about.into(),
            text: text.into(),
            life_domains: domains.iter().map(|d| *d as i32).collect(),
            ..Default::default()
        };
        self.api.create_note(request).await?;
        Ok(())
    }
}

/// Terms with the common parts filled in.
fn terms(
    title: &str,
    parties: Vec<pb::Party>,
    funding: pb::FundingDomain,
    start: &str,
) -> pb::AgreementTerms {
    pb::AgreementTerms {
        title: title.into(),
        parties,
        funding_domain: funding as i32,
        start_date: start.into(),
        ..Default::default()
    }
}

use pb::{
    ContactMode as Mode, FundingDomain as F, LifeDomain as L, MemberRole as R, Relation as Rel,
    SupporterTask as T,
};

/// Scenario 1: copilot, a daughter with ZEVMB, a widowed father.
async fn copilot(api: &Clients) -> DemoResult<Family> {
    let mut f = Family::register(api, "Familie De Vries (copiloot)", "2025-01-06").await?;
    let eva = f
        .member("Eva", R::Client, Rel::Unspecified, "2005-04-02")
        .await?;
    let father = f
        .member("Henk", R::LegalRepresentative, Rel::Parent, "")
        .await?;
    let copilot = f
        .supporter("Anja", pb::SupporterKind::Copilot, "Stichting Copiloot")
        .await?;
    f.phase(pb::SupportPhase::Crisis, 6, "2025-01-06").await?;
    f.on("2025-01-07");
    f.logbook(
        &copilot,
        "2025-01-07",
        120,
        Mode::HomeVisit,
        &[T::ListeningEar, T::Administration],
        &[L::FinancesAndIncome],
        "PGB staat nog op naam van moeder; overdracht naar vader gestart",
    )
    .await?;
    let pgb_goal = f
        .goal(
            &father,
            "PGB op naam van vader en hoger budget",
            &[L::FinancesAndIncome, L::CareOrganisation],
            "",
        )
        .await?;
    f.on("2025-01-20");
    let respite = f.provider("Logeerhuis De Linde").await?;
    let mut respite_terms = terms(
        "logeeropvang twee weekenden per maand",
        vec![member_id(&eva), contact_id(&respite)],
        F::Wlz,
        "2025-02-01",
    );
    respite_terms.pgb = true;
    respite_terms.frequency = "2 weekenden per maand".into();
    respite_terms.responsible_contact_id = respite.clone();
    f.agreement(respite_terms).await?;
    f.on("2025-02-10");
    f.agreement(terms(
        "rouwbegeleiding voor vader",
        vec![member_id(&father)],
        F::Zvw,
        "2025-02-15",
    ))
    .await?;
    f.on("2025-03-24");
    f.note(
        &eva,
        "Logeerhuis een week dicht in april; vervangende opvang gezocht",
        &[L::CareOrganisation],
    )
    .await?;
    f.on("2025-04-01");
    f.achieve(&pgb_goal, "2025-04-01").await?;
    f.phase(pb::SupportPhase::Organising, 2, "2025-04-01")
        .await?;
    Ok(f)
}

/// Scenario 2: life-course coach, a 16-year-old with autism who turns 18.
async fn life_course(api: &Clients) -> DemoResult<Family> {
    let mut f =
        Family::register(api, "Familie Bakker (levensloopbegeleider)", "2024-08-19").await?;
    let sam = f
        .member("Sam", R::Client, Rel::Unspecified, "2008-03-14")
        .await?;
    f.member("Ingrid", R::LegalRepresentative, Rel::Parent, "")
        .await?;
    f.member("Lotte", R::Relative, Rel::Sibling, "2010-06-01")
        .await?;
    let coach = f
        .supporter(
            "Mirjam",
            pb::SupporterKind::LifeCourseCoach,
            "Levensloop Oost",
        )
        .await?;
    f.on("2024-08-26");
    let structure = f
        .goal(
            &sam,
            "structuur in de week",
            &[L::SelfDetermination, L::Education],
            "",
        )
        .await?;
    f.goal(
        &sam,
        "sociale contacten buiten school",
        &[L::SocialNetwork],
        "",
    )
    .await?;
    let youth = f.provider("Jeugdzorg Oost").await?;
    let mut coaching = terms(
        "begeleiding twee middagen per week",
        vec![member_id(&sam), contact_id(&youth)],
        F::Jeugdwet,
        "2024-09-01",
    );
    coaching.goal_ids = vec![structure.clone()];
    coaching.responsible_contact_id = youth;
    f.agreement(coaching).await?;
    f.on("2024-09-10");
    f.logbook(
        &coach,
        "2024-09-10",
        90,
        Mode::HomeVisit,
        &[T::ClarifyRequest, T::StrengthenSelfDirection],
        &[L::Education],
        "verwachtingen opnieuw gezet: mbo met twee stages",
    )
    .await?;
    f.on("2025-06-30");
    f.progress(
        &structure,
        "2025-06-30",
        "weekplanner werkt; eerste stage afgerond",
    )
    .await?;
    f.on("2026-03-14");
    f.api
        .record_funding_transition(pb::RecordFundingTransitionRequest {
            household_id: f.household.clone(),
            options: f.opts(),
            member_id: sam.clone(),
            from_funding_domain: F::Jeugdwet as i32,
            to_funding_domain: F::Wmo as i32,
            date: "2026-03-14".into(),
            reason: "Sam wordt 18: de Jeugdwet stopt, de Wmo neemt over".into(),
        })
        .await?;
    f.on("2026-03-20");
    f.logbook(
        &coach,
        "2026-03-20",
        60,
        Mode::Video,
        &[T::InformAndAdvise],
        &[L::CareOrganisation],
        "zelfde coach, zelfde doelen na de overgang naar de Wmo",
    )
    .await?;
    Ok(f)
}

/// Scenario 3: brain-injury case manager, a man of 48 after a stroke.
async fn brain_injury(api: &Clients) -> DemoResult<Family> {
    let mut f =
        Family::register(api, "Familie Smit (casemanager hersenletsel)", "2025-02-17").await?;
    let kees = f
        .member("Kees", R::Client, Rel::Unspecified, "1977-11-20")
        .await?;
    let wife = f.member("Marion", R::Relative, Rel::Partner, "").await?;
    let manager = f
        .supporter(
            "Ruud",
            pb::SupporterKind::BrainInjuryCaseManager,
            "NAH Netwerk",
        )
        .await?;
    f.on("2025-03-01");
    let plan = f
        .plan(
            pb::PlanKind::CaseManagementPlan,
            "casemanagementplan 2025",
            "2025-03-01",
        )
        .await?;
    let energy = f
        .goal(
            &kees,
            "energie verdelen over de dag",
            &[L::PhysicalHealth, L::DaytimeActivitiesAndWork],
            &plan,
        )
        .await?;
    f.goal(
        &wife,
        "ruimte voor eigen rouw",
        &[L::MentalHealthAndWellbeing],
        &plan,
    )
    .await?;
    f.on("2025-03-05");
    f.logbook(
        &manager,
        "2025-03-05",
        120,
        Mode::HomeVisit,
        &[T::ConditionExpertise, T::CoordinateCare],
        &[L::PhysicalHealth],
        "overprikkeling besproken; Reminder-app ingesteld",
    )
    .await?;
    f.on("2025-03-10");
    let mut rehab = terms(
        "cognitieve revalidatie",
        vec![member_id(&kees)],
        F::Zvw,
        "2025-03-15",
    );
    rehab.goal_ids = vec![energy];
    rehab.frequency = "wekelijks".into();
    f.agreement(rehab).await?;
    f.agreement(terms(
        "rouwbegeleiding voor Marion",
        vec![member_id(&wife)],
        F::Zvw,
        "2025-04-01",
    ))
    .await?;
    f.on("2025-04-14");
    let uwv = f.institution("UWV", pb::InstitutionKind::Uwv).await?;
    f.agreement(terms(
        "herbeoordeling arbeidsvermogen",
        vec![member_id(&kees), contact_id(&uwv)],
        F::Participatiewet,
        "2025-05-01",
    ))
    .await?;
    Ok(f)
}

/// Scenario 4: network guide, a man of 23 with LVB+ looking for a place to live.
async fn network_guide(api: &Clients) -> DemoResult<Family> {
    let mut f = Family::register(api, "Familie Jansen (netwerkgids)", "2024-01-15").await?;
    let daan = f
        .member("Daan", R::Client, Rel::Unspecified, "2002-08-09")
        .await?;
    f.member("Petra", R::LegalRepresentative, Rel::Parent, "")
        .await?;
    let guide = f
        .supporter(
            "Fatima",
            pb::SupporterKind::NetworkGuide,
            "Netwerkgids Noord",
        )
        .await?;
    f.indication(
        &daan,
        pb::IndicationKind::WlzIndication,
        "VG6",
        "2024-01-01",
        "",
    )
    .await?;
    let place = f
        .goal(
            &daan,
            "passende woonplek met 24-uurs toezicht",
            &[L::Housing, L::Safety],
            "",
        )
        .await?;
    f.on("2024-06-12");
    f.logbook(
        &guide,
        "2024-06-12",
        240,
        Mode::Accompanying,
        &[T::CareMediation, T::AccompanyExternal],
        &[L::Housing],
        "bezoek aan de twaalfde aanbieder; wachtlijst",
    )
    .await?;
    f.on("2025-01-20");
    let home = f.provider("Woonzorg De Horst").await?;
    let mut room = terms(
        "kamer met 24-uurs begeleiding",
        vec![member_id(&daan), contact_id(&home)],
        F::Wlz,
        "2025-02-01",
    );
    room.goal_ids = vec![place.clone()];
    room.responsible_contact_id = home;
    f.agreement(room).await?;
    f.agreement(terms(
        "dagbesteding blijft drie dagen per week",
        vec![member_id(&daan)],
        F::Wlz,
        "2025-02-01",
    ))
    .await?;
    f.on("2025-02-01");
    f.achieve(&place, "2025-02-01").await?;
    f.on("2025-03-01");
    f.phase(pb::SupportPhase::PilotLight, 1, "2025-03-01")
        .await?;
    Ok(f)
}

/// Scenario 5: ally for a whole family with three children who need care.
async fn ally(api: &Clients) -> DemoResult<Family> {
    let mut f = Family::register(api, "Familie Mulder (bondgenoot)", "2024-09-16").await?;
    f.member("Tim", R::Client, Rel::Child, "2005-01-15").await?;
    let noor = f
        .member("Noor", R::Client, Rel::Child, "2009-05-30")
        .await?;
    let finn = f
        .member("Finn", R::Client, Rel::Child, "2016-09-12")
        .await?;
    let mother = f
        .member("Sanne", R::LegalRepresentative, Rel::Parent, "")
        .await?;
    let ally = f
        .supporter("Joost", pb::SupporterKind::Ally, "Bondgenoot van Naasten")
        .await?;
    f.indication(
        &noor,
        pb::IndicationKind::ZvwNursingIndication,
        "",
        "2024-01-01",
        "2024-12-31",
    )
    .await?;
    f.on("2024-10-01");
    let plan = f
        .plan(pb::PlanKind::FamilyPlan, "gezinsplan", "2024-10-01")
        .await?;
    f.goal(
        &mother,
        "lucht voor moeder: één vrije dag per week",
        &[L::FamilyLifeAndRelationships, L::MentalHealthAndWellbeing],
        &plan,
    )
    .await?;
    f.on("2025-01-06");
    f.note(
        &noor,
        "Herindicatie verpleging loopt: maanden zonder geld om de zorgverleners te betalen",
        &[L::FinancesAndIncome, L::PhysicalHealth],
    )
    .await?;
    f.on("2025-01-15");
    let municipality = f
        .institution("Gemeente", pb::InstitutionKind::Municipality)
        .await?;
    let mut hoist = terms(
        "tillift en douchebrancard",
        vec![member_id(&finn), contact_id(&municipality)],
        F::Wmo,
        "2025-01-15",
    );
    hoist.description = "opnieuw aangevraagd door de bondgenoot en toegekend".into();
    f.agreement(hoist).await?;
    f.on("2025-02-03");
    f.logbook(
        &ally,
        "2025-02-03",
        180,
        Mode::Phone,
        &[T::Advocacy, T::FacilitateDialogue],
        &[L::PhysicalHealth],
        "ziekenhuisopname op 2,5 uur rijden onderhandeld",
    )
    .await?;
    f.on("2025-02-24");
    f.agreement(terms(
        "rouwtherapeut voor het gezin",
        vec![member_id(&mother)],
        F::Zvw,
        "2025-03-01",
    ))
    .await?;
    f.on("2025-04-01");
    f.indication(
        &noor,
        pb::IndicationKind::ZvwNursingIndication,
        "",
        "2025-04-01",
        "",
    )
    .await?;
    f.on("2025-10-01");
    f.plan(pb::PlanKind::PilotLightPlan, "waakvlamplan", "2025-10-01")
        .await?;
    f.phase(pb::SupportPhase::PilotLight, 1, "2025-10-01")
        .await?;
    Ok(f)
}

/// Enacts the five scenarios against the server at `url`, signed in with `token` (a client or
/// legal representative, who registers the households and so may see them), and prints each
/// timeline.
pub async fn run(url: String, token: &str, out: &mut impl std::io::Write) -> DemoResult<()> {
    let channel = Channel::from_shared(url)?.connect().await?;
    let bearer = naast_proto::client::Bearer::new(token)?;
    let api = Clients {
        households: HouseholdServiceClient::with_interceptor(channel.clone(), bearer.clone()),
        consent: naast_proto::pb::consent_service_client::ConsentServiceClient::with_interceptor(
            channel, bearer,
        ),
    };
    let families = [
        copilot(&api).await?,
        life_course(&api).await?,
        brain_injury(&api).await?,
        network_guide(&api).await?,
        ally(&api).await?,
    ];
    for mut family in families {
        print_timeline(&mut family, out).await?;
    }
    Ok(())
}

async fn print_timeline(family: &mut Family, out: &mut impl std::io::Write) -> DemoResult<()> {
    let household = family
        .api
        .get_household(pb::GetHouseholdRequest {
            household_id: family.household.clone(),
            min_position: 0,
            ..Default::default()
        })
        .await?
        .into_inner()
        .household
        .unwrap_or_default();
    let mut by_date: BTreeMap<String, Vec<pb::TimelineEntry>> = BTreeMap::new();
    let mut token = String::new();
    loop {
        let page = family
            .api
            .list_timeline_entries(pb::ListTimelineEntriesRequest {
                household_id: family.household.clone(),
                page_size: 200,
                page_token: token,
                ..Default::default()
            })
            .await?
            .into_inner();
        for entry in page.entries {
            by_date.entry(entry.date.clone()).or_default().push(entry);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    writeln!(
        out,
        "\n━━ {} ━━  ({} gebeurtenissen, household_id {})",
        household.name,
        household.revision + 1,
        household.household_id
    )?;
    for (date, entries) in by_date {
        for (i, entry) in entries.iter().enumerate() {
            let domains: Vec<&str> = entry
                .funding_domains
                .iter()
                .map(|d| {
                    <naast_domain::vocab::FundingDomain as Vocabulary>::required("", *d)
                        .map_or("?", |d| d.display_name())
                })
                .collect();
            let date = if i == 0 { date.as_str() } else { "" };
            let domains = if domains.is_empty() {
                String::new()
            } else {
                format!("[{}]", domains.join("→"))
            };
            writeln!(out, "  {date:<10}  {domains:<18} {}", entry.summary)?;
        }
    }
    Ok(())
}
