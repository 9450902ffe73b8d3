skip-to-content = Skip to content
nav-language = Language
nav-account = My space
nav-vault = My documents
nav-settings = My notifications
nav-logout = Log out
footer-text = Your commune's public digital service — minimal data, encrypted, accountable.

home-title = Your documents from the commune, kept safe
home-intro = The documents your commune sends you (notices, certificates, invoices) are encrypted as soon as they are delivered and wait for you in your personal space.
home-no-attachment = You receive a short message telling you a document is waiting: it never carries an attachment or a link.
home-login = Open my space
home-no-provider = No login method is configured yet.
fc-login = Log in with
fc-what = What is FranceConnect?
fc-explain = FranceConnect is the solution offered by the French State to secure and simplify logging in to your online services.
login-or = or

vault-title = My documents
vault-empty = No document is waiting for you yet. You will be told by a message as soon as one arrives.
vault-count = { $count ->
    [one] One document is waiting for you.
   *[other] { $count } documents are waiting for you.
}
vault-new = New
vault-sender = Sender
vault-category = Category
vault-date = Received on
vault-size = Size
vault-file = File

settings-title = My notifications
settings-intro = Tell us where we may let you know that a document is waiting. The message never carries the document, a link or its title.
settings-email = Email address
settings-phone = Mobile phone
settings-channel = Tell me by
settings-channel-email = email
settings-channel-sms = text message
settings-channel-both = email and text message
settings-channel-none = do not tell me
settings-save = Save
settings-saved = Your preferences are saved.
settings-invalid-email = The email address is not valid.
settings-invalid-phone = The phone number is not valid (for example +33 6 12 34 56 78 or +32 470 12 34 56).
settings-missing-contact = Give the address or number for the channel you chose.

logged-out-title = You are logged out
logged-out-message = Your session is closed. On a shared computer, also close the browser.
back-home = Back to the home page
login-again = Log in
expired-title = Session expired
expired-message = Your session has expired or you are not logged in. Log in to see your documents.
not-found-title = Page not found
not-found-message = This page does not exist, or this document is not in your space.
error-title = Something went wrong
error-message = The service could not answer. Please try again in a moment.
login-failed-title = Login failed
login-error-state = This login link has expired or was already used. Please start again.
login-error-refused = The identity provider refused the login.
login-error-unavailable = The identity provider is not answering. Please try again in a moment.
login-error-token = The identity provider's answer could not be verified. Please start again.
login-error-level = This service requires a stronger level of identity verification.
login-error-claims = The identity provider did not send the identity this service needs.
csrf-title = Form expired
csrf-message = This form has expired. Reload the page and try again.

# Notices (email and SMS). No link, no domain, no title: the link-free check refuses them.
notice-document-subject = { $tenant }: a document is waiting for you
notice-reminder-subject = Reminder: a document from { $tenant } is waiting for you
notice-greeting = Hello,
notice-document-body = { $tenant } has placed a document for you in your secure space.
notice-reminder-body = A document from { $tenant } is still waiting for you in your secure space.
notice-how-to = To read it, log in to your municipality's portal with FranceConnect.
notice-no-link = This message has no attachment and no link. Never give out your credentials, even to a message that seems to come from your municipality.
notice-automatic = Automatic message from { $tenant }, please do not reply.
notice-document-sms = { $tenant }: a document is waiting in your secure space. Log in to your municipality's portal with FranceConnect.
notice-reminder-sms = Reminder { $tenant }: a document is waiting in your secure space. Log in to your municipality's portal with FranceConnect.
demo-outbox-title = Demonstration messages
demo-outbox-intro = In demonstration mode notices are not sent: this is what would have gone out (most recent first).
demo-outbox-empty = No notice yet.
demo-outbox-channel = Channel
demo-outbox-to = Recipient
demo-outbox-at = Sent at
