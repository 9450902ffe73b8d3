//! The portal's public front page. The citizen vault and agent pages build on it.

use actix_web::{HttpResponse, web};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home));
}

const HOME: &str = r#"<!doctype html>
<html lang="fr">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>e-guichet — vos documents de la commune</title>
</head>
<body>
<header><p><strong>e-guichet</strong></p></header>
<main>
<h1>Vos documents de la commune, en sécurité</h1>
<p>Les documents que votre commune vous adresse (avis, attestations, factures) sont
chiffrés dès leur dépôt et vous attendent dans votre espace personnel.</p>
<p>Vous recevez un simple message vous prévenant qu'un document vous attend : il ne
contient jamais de pièce jointe ni de lien.</p>
</main>
<footer><p>Service public numérique — données minimales, chiffrées, traçables.</p></footer>
</body>
</html>
"#;

async fn home() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(HOME)
}
