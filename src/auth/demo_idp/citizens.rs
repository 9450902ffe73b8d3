//! The fictitious citizens one can log in as, chosen to exercise what FranceConnect
//! really sends: compound given names, an empty birthplace for people born abroad, a
//! presumed birth date, a Corsican commune code, a usage name, a shared email address.

use sha2::{Digest, Sha256};

/// A test citizen, with claims formatted as FranceConnect sends them.
#[derive(Debug)]
pub struct DemoCitizen {
    /// What the login page posts; not a claim.
    pub login: &'static str,
    /// All given names, separated by spaces.
    pub given_name: &'static str,
    /// Birth name, in upper case.
    pub family_name: &'static str,
    /// `YYYY-MM-DD`, possibly presumed (`YYYY-01-01`).
    pub birthdate: &'static str,
    /// INSEE commune code (COG), empty when born abroad.
    pub birthplace: &'static str,
    /// INSEE country code; `99100` is France.
    pub birthcountry: &'static str,
    /// `female` or `male`.
    pub gender: &'static str,
    /// A contact address, possibly shared with others: never an identity.
    pub email: &'static str,
    /// Usage name (e.g. married name), empty when none.
    pub preferred_username: &'static str,
    /// What this citizen is for, shown on the login page.
    pub note: &'static str,
}

impl DemoCitizen {
    /// The pairwise `sub` this citizen has at `client_id`: hex SHA-256 of the client id
    /// followed by the login, so it is stable across restarts and differs per client.
    pub fn subject_for(&self, client_id: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(client_id.as_bytes());
        hasher.update(self.login.as_bytes());
        hex::encode(hasher.finalize())
    }

    /// The value of an identity claim, by its name.
    pub(super) fn claim(&self, name: &str) -> Option<&'static str> {
        match name {
            "given_name" => Some(self.given_name),
            "family_name" => Some(self.family_name),
            "birthdate" => Some(self.birthdate),
            "birthplace" => Some(self.birthplace),
            "birthcountry" => Some(self.birthcountry),
            "gender" => Some(self.gender),
            "email" => Some(self.email),
            "preferred_username" => Some(self.preferred_username),
            _ => None,
        }
    }
}

/// Every test citizen, in the order of the login page.
pub fn demo_citizens() -> &'static [DemoCitizen] {
    &CITIZENS
}

/// The test citizen with this login, if any.
pub(super) fn find_citizen(login: &str) -> Option<&'static DemoCitizen> {
    CITIZENS.iter().find(|citizen| citizen.login == login)
}

static CITIZENS: [DemoCitizen; 6] = [
    DemoCitizen {
        login: "marie.dupont",
        given_name: "Marie Claire",
        family_name: "DUPONT",
        birthdate: "1980-07-30",
        birthplace: "75056",
        birthcountry: "99100",
        gender: "female",
        email: "famille.dupont@example.org",
        preferred_username: "",
        note: "née à Paris ; partage son adresse électronique avec Jean DUPONT",
    },
    DemoCitizen {
        login: "jean.dupont",
        given_name: "Jean Michel Henri",
        family_name: "DUPONT",
        birthdate: "1978-03-12",
        birthplace: "69123",
        birthcountry: "99100",
        gender: "male",
        email: "famille.dupont@example.org",
        preferred_username: "",
        note: "né à Lyon ; partage son adresse électronique avec Marie Claire DUPONT",
    },
    DemoCitizen {
        login: "awa.diallo",
        given_name: "Awa Fatou",
        family_name: "DIALLO",
        birthdate: "1992-11-05",
        birthplace: "",
        birthcountry: "99341",
        gender: "female",
        email: "awa.diallo@example.org",
        preferred_username: "",
        note: "née au Sénégal : lieu de naissance vide",
    },
    DemoCitizen {
        login: "ahmad.rahimi",
        given_name: "Ahmad",
        family_name: "RAHIMI",
        birthdate: "1975-01-01",
        birthplace: "",
        birthcountry: "99212",
        gender: "male",
        email: "ahmad.rahimi@example.org",
        preferred_username: "",
        note: "né en Afghanistan, date de naissance présumée",
    },
    DemoCitizen {
        login: "paul.casanova",
        given_name: "Paul Antoine",
        family_name: "CASANOVA",
        birthdate: "1965-02-14",
        birthplace: "2A004",
        birthcountry: "99100",
        gender: "male",
        email: "paul.casanova@example.org",
        preferred_username: "",
        note: "né à Ajaccio : code commune corse 2A004",
    },
    DemoCitizen {
        login: "sophie.lefebvre",
        given_name: "Sophie Anne",
        family_name: "LEFEBVRE",
        birthdate: "1988-09-21",
        birthplace: "59350",
        birthcountry: "99100",
        gender: "female",
        email: "sophie.moreau@example.org",
        preferred_username: "MOREAU",
        note: "née à Lille ; nom d'usage MOREAU",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_pairwise_and_stable() {
        let marie = find_citizen("marie.dupont").unwrap();
        let jean = find_citizen("jean.dupont").unwrap();
        assert_eq!(marie.subject_for("portal"), marie.subject_for("portal"));
        assert_ne!(marie.subject_for("portal"), marie.subject_for("other"));
        assert_ne!(marie.subject_for("portal"), jean.subject_for("portal"));
        assert_eq!(marie.subject_for("portal").len(), 64);
    }

    #[test]
    fn claims_follow_franceconnect_formats() {
        for citizen in demo_citizens() {
            assert_eq!(citizen.family_name, citizen.family_name.to_uppercase());
            assert!(matches!(citizen.gender, "female" | "male"));
            assert_eq!(citizen.birthdate.len(), 10);
            assert_eq!(citizen.birthcountry.len(), 5);
            // FranceConnect sends a commune only for people born in France.
            assert_eq!(
                citizen.birthplace.is_empty(),
                citizen.birthcountry != "99100",
                "{}",
                citizen.login
            );
        }
    }
}
