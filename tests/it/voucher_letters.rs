//! Voucher letters read back as a distributor's scanner and a screen reader would
//! (`tests/common/pdf_decode.rs`): every page holds its own code, as a QR code and in
//! print, and its household's address.

use crate::common::pdf_decode::{decode_pdf, decoder_available};
use eguichet::vouchers::{
    DistributionSite, Letter, LetterCampaign, LetterTexts, VoucherCode, write_letters_pdf,
};

struct Household {
    reference: String,
    address: Vec<String>,
    code: VoucherCode,
}

/// Households with addresses of two to six lines, accents and typographic apostrophes.
fn households(count: usize) -> Vec<Household> {
    let streets = [
        "12 rue de l’Église",
        "3 place du Marché",
        "Résidence Les Peupliers",
        "45 bis chemin des Écoliers",
    ];
    (0..count)
        .map(|n| {
            let mut address = vec![format!("Foyer Lefèvre-Dupré n° {n}")];
            address.extend(
                streets
                    .iter()
                    .take(n % 4)
                    .map(|street| (*street).to_owned()),
            );
            address.push("59230 SAINT-AMAND-LES-EAUX".into());
            Household {
                reference: format!("F-{n:05}"),
                address,
                code: VoucherCode::generate(),
            }
        })
        .collect()
}

#[test]
fn every_page_scans_as_its_own_code_and_reads_as_its_household() {
    if !decoder_available() {
        return;
    }
    let sites = [
        DistributionSite {
            name: "Salle des fêtes",
            address: "Place du Marché",
            hours: "de 9 h à 12 h et de 14 h à 18 h",
        },
        DistributionSite {
            name: "Mairie annexe",
            address: "3 rue de l’Œuvre",
            hours: "de 10 h à 16 h",
        },
    ];
    let campaign = LetterCampaign {
        tenant_name: "Commune de Saint-Amand-les-Eaux",
        campaign_name: "Distribution de masques lavables — mai 2020",
        item: "masques lavables",
        dates: "Du lundi 11 au samedi 16 mai 2020",
        sites: &sites,
    };
    let households = households(30);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("letters.pdf");
    let pages = write_letters_pdf(
        &campaign,
        &LetterTexts::french(),
        households.iter().enumerate().map(|(n, household)| Letter {
            household_reference: &household.reference,
            address: &household.address,
            allotment: 1 + n as u32 % 3,
            code: &household.code,
        }),
        std::fs::File::create(&path).unwrap(),
    )
    .unwrap();
    assert_eq!(pages, 30);

    let decoded = decode_pdf(&path);
    assert_eq!(decoded.len(), households.len());
    for (n, (page, household)) in decoded.iter().zip(&households).enumerate() {
        assert_eq!(page.codes, [household.code.as_str()], "page {}", n + 1);
        assert!(
            page.text.contains(&household.code.grouped()),
            "page {}: {}",
            n + 1,
            page.text
        );
        assert!(page.text.contains(&household.reference));
        for line in &household.address {
            assert!(page.text.contains(line.as_str()), "page {}: {line}", n + 1);
        }
        assert!(
            page.text
                .contains(&format!("{} × masques lavables", 1 + n % 3))
        );
        assert!(page.text.contains("Aucune pièce d’identité n’est scannée"));
    }
}
