skip-to-content = Aller au contenu
nav-language = Langue
nav-account = Mon espace
nav-vault = Mes documents
nav-settings = Mes notifications
nav-logout = Se déconnecter
footer-text = Service public numérique de votre commune — données minimales, chiffrées, traçables.

home-title = Vos documents de la commune, en sécurité
home-intro = Les documents que votre commune vous adresse (avis, attestations, factures) sont chiffrés dès leur dépôt et vous attendent dans votre espace personnel.
home-no-attachment = Vous recevez un simple message vous prévenant qu'un document vous attend : il ne contient jamais de pièce jointe ni de lien.
home-login = Accéder à mon espace
home-no-provider = Aucun moyen de connexion n'est configuré pour le moment.
fc-login = S'identifier avec
fc-what = Qu'est-ce que FranceConnect ?
fc-explain = FranceConnect est la solution proposée par l'État pour sécuriser et simplifier la connexion à vos services en ligne.
login-or = ou

vault-title = Mes documents
vault-empty = Aucun document ne vous attend pour le moment. Vous serez prévenu par un message dès qu'un document arrive.
vault-count = { $count ->
    [one] Un document vous attend.
   *[other] { $count } documents vous attendent.
}
vault-new = Nouveau
vault-sender = Expéditeur
vault-category = Catégorie
vault-date = Reçu le
vault-size = Taille
vault-file = Fichier

settings-title = Mes notifications
settings-intro = Indiquez où nous pouvons vous prévenir qu'un document vous attend. Le message ne contient jamais le document, ni de lien, ni son titre.
settings-email = Adresse électronique
settings-phone = Téléphone mobile
settings-channel = Me prévenir par
settings-channel-email = courriel
settings-channel-sms = SMS
settings-channel-both = courriel et SMS
settings-channel-none = ne pas me prévenir
settings-save = Enregistrer
settings-saved = Vos préférences sont enregistrées.
settings-invalid-email = L'adresse électronique n'est pas valide.
settings-invalid-phone = Le numéro de téléphone n'est pas valide (exemple : 06 12 34 56 78 ou +32 470 12 34 56).
settings-missing-contact = Indiquez l'adresse ou le numéro correspondant au moyen choisi.

logged-out-title = Vous êtes déconnecté
logged-out-message = Votre session est fermée. Sur un ordinateur partagé, fermez aussi le navigateur.
back-home = Retour à l'accueil
login-again = Se connecter
expired-title = Session expirée
expired-message = Votre session a expiré ou vous n'êtes pas connecté. Connectez-vous pour accéder à vos documents.
not-found-title = Page introuvable
not-found-message = Cette page n'existe pas, ou ce document n'est pas dans votre espace.
error-title = Une erreur est survenue
error-message = Le service n'a pas pu répondre. Réessayez dans un instant.
login-failed-title = Connexion impossible
login-error-state = Ce lien de connexion a expiré ou a déjà servi. Recommencez la connexion.
login-error-refused = Le fournisseur d'identité a refusé la connexion.
login-error-unavailable = Le fournisseur d'identité ne répond pas. Réessayez dans un instant.
login-error-token = La réponse du fournisseur d'identité n'a pas pu être vérifiée. Recommencez la connexion.
login-error-level = Ce service demande un niveau de vérification d'identité plus élevé.
login-error-claims = Le fournisseur d'identité n'a pas transmis l'identité nécessaire à ce service.
csrf-title = Formulaire expiré
csrf-message = Ce formulaire a expiré. Rechargez la page et recommencez.

# Notices (email and SMS). No link, no domain, no title: the link-free check refuses them.
notice-document-subject = { $tenant } : un document vous attend
notice-reminder-subject = Rappel : un document de { $tenant } vous attend
notice-greeting = Bonjour,
notice-document-body = { $tenant } a déposé un document à votre attention dans votre espace sécurisé.
notice-reminder-body = Un document déposé par { $tenant } vous attend toujours dans votre espace sécurisé.
notice-how-to = Pour le consulter, connectez-vous au portail de votre commune avec FranceConnect.
notice-no-link = Ce message ne contient ni pièce jointe ni lien. Ne communiquez jamais vos identifiants, même à un message qui semble venir de votre commune.
notice-automatic = Message automatique de { $tenant }, merci de ne pas y répondre.
notice-document-sms = { $tenant } : un document vous attend dans votre espace sécurisé. Connectez-vous au portail de votre commune avec FranceConnect.
notice-reminder-sms = Rappel { $tenant } : un document vous attend dans votre espace sécurisé. Connectez-vous au portail de votre commune avec FranceConnect.
demo-outbox-title = Messages de démonstration
demo-outbox-intro = En mode démonstration, les avis ne partent pas : voici ce qui aurait été envoyé (les plus récents d'abord).
demo-outbox-empty = Aucun avis pour le moment.
demo-outbox-channel = Canal
demo-outbox-to = Destinataire
demo-outbox-at = Envoyé le
