//! The provider's two HTML pages, in French: choosing a test citizen, and refusing a
//! request that cannot go back to the relying party. No script and no inline style:
//! the portal's Content-Security-Policy forbids both.

use std::fmt::Write;

use actix_web::HttpResponse;

use super::citizens::DemoCitizen;

/// The login page: one radio button per citizen, the authorization request carried in
/// hidden fields, and buttons to log in or to refuse.
pub(super) fn citizen_chooser(
    action: &str,
    carried: &[(&'static str, String)],
    citizens: &[DemoCitizen],
) -> HttpResponse {
    let mut hidden = String::new();
    for (name, value) in carried {
        let _ = writeln!(
            hidden,
            r#"<input type="hidden" name="{name}" value="{}">"#,
            escape(value)
        );
    }
    let mut choices = String::new();
    for citizen in citizens {
        let login = escape(citizen.login);
        let _ = writeln!(
            choices,
            r#"<li><input type="radio" id="citizen-{login}" name="citizen" value="{login}" required>
<label for="citizen-{login}">{} {} — {}</label></li>"#,
            escape(citizen.given_name),
            escape(citizen.family_name),
            escape(citizen.note),
        );
    }
    let body = format!(
        r#"<h1>Connexion de démonstration</h1>
<p>Ce fournisseur d'identité imite FranceConnect pour essayer le portail : les
personnes ci-dessous sont fictives et aucun mot de passe n'est demandé.</p>
<form method="post" action="{action}">
{hidden}<fieldset>
<legend>Se connecter en tant que</legend>
<ul>
{choices}</ul>
</fieldset>
<p><button type="submit" name="decision" value="accept">Se connecter</button>
<button type="submit" name="decision" value="refuse" formnovalidate>Refuser</button></p>
</form>"#,
        action = escape(action),
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page("Connexion de démonstration", &body))
}

/// `GET /demo-idp`: who the test citizens are, with every field an agent types to
/// address a document to one of them before they log in (the pivot identity, exactly
/// as the delivery form and the API take it).
pub(super) fn citizen_directory(citizens: &[DemoCitizen]) -> HttpResponse {
    let mut rows = String::new();
    for citizen in citizens {
        let recipient = serde_json::json!({"pivot": {
            "family_name": citizen.family_name,
            "given_names": citizen.given_name,
            "birthdate": citizen.birthdate,
            "birthplace": citizen.birthplace,
        }});
        let birthplace = if citizen.birthplace.is_empty() {
            "(vide : né·e à l'étranger)"
        } else {
            citizen.birthplace
        };
        let _ = writeln!(
            rows,
            "<tr><th scope=\"row\">{family}</th><td>{given}</td><td>{birthdate}</td>\
             <td>{birthplace}</td><td>{country}</td><td>{gender}</td><td>{usage}</td>\
             <td>{email}</td><td><code>{recipient}</code></td><td>{note}</td></tr>",
            family = escape(citizen.family_name),
            given = escape(citizen.given_name),
            birthdate = escape(citizen.birthdate),
            birthplace = escape(birthplace),
            country = escape(citizen.birthcountry),
            gender = escape(citizen.gender),
            usage = escape(citizen.preferred_username),
            email = escape(citizen.email),
            recipient = escape(&recipient.to_string()),
            note = escape(citizen.note),
        );
    }
    let body = format!(
        r#"<h1>Personnes de démonstration</h1>
<p>Ce fournisseur d'identité imite FranceConnect : il transmet au portail l'identité
pivot de chaque personne (nom de naissance, prénoms, date et commune de naissance). Pour
déposer un document à l'une d'elles avant qu'elle se connecte, un agent saisit ces
champs tels quels dans le formulaire de dépôt, ou envoie le destinataire JSON indiqué
à l'API. Ces personnes n'ont pas de numéro de registre national : il ne sert qu'aux
connexions par le FAS belge. L'adresse électronique n'est jamais une identité.</p>
<table>
<caption>Identité transmise pour chaque personne</caption>
<thead><tr><th scope="col">Nom de naissance (family_name)</th>
<th scope="col">Prénoms (given_names)</th><th scope="col">Date de naissance (birthdate)</th>
<th scope="col">Commune de naissance, code INSEE (birthplace)</th>
<th scope="col">Pays de naissance (birthcountry)</th><th scope="col">Genre</th>
<th scope="col">Nom d'usage</th><th scope="col">Adresse électronique</th>
<th scope="col">Destinataire pour l'API</th><th scope="col">Particularité</th></tr></thead>
<tbody>
{rows}</tbody>
</table>
<p>On se connecte en l'une d'elles depuis la page de connexion du portail.</p>"#
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page("Personnes de démonstration", &body))
}

/// A 400 page for a request the provider will not send back to any relying party.
pub(super) fn refusal(reason: &str) -> HttpResponse {
    let body = format!(
        "<h1>Demande refusée</h1>\n<p>Le fournisseur d'identité de démonstration ne peut pas \
         traiter cette demande : {}.</p>\n<p>Revenez au service d'où vous venez et \
         recommencez.</p>",
        escape(reason)
    );
    HttpResponse::BadRequest()
        .content_type("text/html; charset=utf-8")
        .body(page("Demande refusée", &body))
}

fn page(title: &str, main: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="fr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} — fournisseur d'identité de démonstration</title>
<link rel="stylesheet" href="/static/app.css">
</head>
<body>
<header><p><strong>Fournisseur d'identité de démonstration</strong></p></header>
<main>
{main}
</main>
<footer><p>Environnement de démonstration : ne saisissez aucune donnée réelle.</p></footer>
</body>
</html>
"#
    )
}

/// Escapes text for an HTML element or a double-quoted attribute.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
