"""The UI's texts in English, French and German.

`translate("locked", "de", minutes=15)` gives the German text with its placeholder filled in.
Every message id has all three languages with the same `{placeholders}` (a test holds this).
"""

from __future__ import annotations

LANGUAGES = ("en", "fr", "de")
DEFAULT_LANGUAGE = "en"

TEXTS: dict[str, dict[str, str]] = {
    "title": {
        "en": "Document assistant",
        "fr": "Assistant documentaire",
        "de": "Dokumentenassistent",
    },
    "username": {"en": "Username", "fr": "Nom d'utilisateur", "de": "Benutzername"},
    "password": {"en": "Password", "fr": "Mot de passe", "de": "Passwort"},
    "sign_in": {"en": "Sign in", "fr": "Se connecter", "de": "Anmelden"},
    "sign_out": {"en": "Sign out", "fr": "Se déconnecter", "de": "Abmelden"},
    "sso_sign_in": {
        "en": "Sign in with single sign-on",
        "fr": "Se connecter avec l'authentification unique",
        "de": "Mit Single Sign-on anmelden",
    },
    "break_glass_only": {
        "en": "The form below is for the appliance's local administrator accounts only.",
        "fr": "Le formulaire ci-dessous est réservé aux comptes administrateurs locaux de "
        "l'appliance.",
        "de": "Das Formular unten ist nur für die lokalen Administratorkonten der Appliance.",
    },
    "sso_failed": {
        "en": "Single sign-on did not complete. Please try again.",
        "fr": "L'authentification unique n'a pas abouti. Veuillez réessayer.",
        "de": "Die Anmeldung per Single Sign-on wurde nicht abgeschlossen. Bitte versuchen Sie "
        "es erneut.",
    },
    "sso_unavailable": {
        "en": "Single sign-on is unavailable right now; local administrators may sign in below.",
        "fr": "L'authentification unique est indisponible pour le moment ; les administrateurs "
        "locaux peuvent se connecter ci-dessous.",
        "de": "Single Sign-on ist derzeit nicht verfügbar; lokale Administratoren können sich "
        "unten anmelden.",
    },
    "wrong_password": {
        "en": "Unknown username or wrong password.",
        "fr": "Nom d'utilisateur inconnu ou mot de passe incorrect.",
        "de": "Unbekannter Benutzername oder falsches Passwort.",
    },
    "locked": {
        "en": "Too many failed sign-ins. Try again in {minutes} minutes.",
        "fr": "Trop de tentatives de connexion échouées. Réessayez dans {minutes} minutes.",
        "de": "Zu viele fehlgeschlagene Anmeldeversuche. Versuchen Sie es in {minutes} Minuten "
        "erneut.",
    },
    "directory_unavailable": {
        "en": "The organisation's directory cannot be reached, so nobody can sign in right now. "
        "Try again in a few minutes; if it goes on, tell the IT service desk.",
        "fr": "L'annuaire de l'organisation est injoignable : personne ne peut se connecter pour "
        "le moment. Réessayez dans quelques minutes ; si cela dure, prévenez le support "
        "informatique.",
        "de": "Das Verzeichnis der Organisation ist nicht erreichbar, daher kann sich gerade "
        "niemand anmelden. Versuchen Sie es in einigen Minuten erneut; hält es an, melden Sie es "
        "dem IT-Service-Desk.",
    },
    "account_locked": {
        "en": "Your directory account is locked after too many wrong passwords. Wait until it "
        "unlocks, or ask the IT service desk to unlock it.",
        "fr": "Votre compte de l'annuaire est verrouillé après trop de mots de passe erronés. "
        "Attendez son déverrouillage ou demandez-le au support informatique.",
        "de": "Ihr Verzeichniskonto ist nach zu vielen falschen Passwörtern gesperrt. Warten Sie, "
        "bis es entsperrt wird, oder lassen Sie es vom IT-Service-Desk entsperren.",
    },
    "password_expired": {
        "en": "Your password has expired: change it the usual way, then sign in.",
        "fr": "Votre mot de passe a expiré : changez-le comme d'habitude, puis connectez-vous.",
        "de": "Ihr Passwort ist abgelaufen: Ändern Sie es auf dem üblichen Weg und melden Sie "
        "sich dann an.",
    },
    "password_must_change": {
        "en": "You must change your password before you first sign in: change it the usual "
        "way, then sign in.",
        "fr": "Vous devez changer votre mot de passe avant de vous connecter : changez-le comme "
        "d'habitude, puis connectez-vous.",
        "de": "Sie müssen Ihr Passwort ändern, bevor Sie sich anmelden: Ändern Sie es auf dem "
        "üblichen Weg und melden Sie sich dann an.",
    },
    "account_disabled": {
        "en": "Your directory account is disabled. Ask the IT service desk.",
        "fr": "Votre compte de l'annuaire est désactivé. Adressez-vous au support informatique.",
        "de": "Ihr Verzeichniskonto ist deaktiviert. Wenden Sie sich an den IT-Service-Desk.",
    },
    "account_expired": {
        "en": "Your directory account has expired. Ask the IT service desk.",
        "fr": "Votre compte de l'annuaire a expiré. Adressez-vous au support informatique.",
        "de": "Ihr Verzeichniskonto ist abgelaufen. Wenden Sie sich an den IT-Service-Desk.",
    },
    "session_expired": {
        "en": "Your session has expired. Please sign in again.",
        "fr": "Votre session a expiré. Veuillez vous reconnecter.",
        "de": "Ihre Sitzung ist abgelaufen. Bitte melden Sie sich erneut an.",
    },
    "account_changed": {
        "en": "Your account was changed or removed. Please sign in again.",
        "fr": "Votre compte a été modifié ou supprimé. Veuillez vous reconnecter.",
        "de": "Ihr Konto wurde geändert oder entfernt. Bitte melden Sie sich erneut an.",
    },
    "signed_in_as": {
        "en": "Signed in as {user}",
        "fr": "Connecté en tant que {user}",
        "de": "Angemeldet als {user}",
    },
    "ask_placeholder": {
        "en": "Ask a question about your documents",
        "fr": "Posez une question sur vos documents",
        "de": "Stellen Sie eine Frage zu Ihren Dokumenten",
    },
    "refusal": {
        "en": "The documents do not contain the answer to this question.",
        "fr": "Les documents ne contiennent pas la réponse à cette question.",
        "de": "Die Dokumente enthalten keine Antwort auf diese Frage.",
    },
    "sources": {"en": "Sources", "fr": "Sources", "de": "Quellen"},
    "closest": {
        "en": "Closest passages found",
        "fr": "Passages les plus proches trouvés",
        "de": "Ähnlichste gefundene Textstellen",
    },
    "page": {"en": "page {page}", "fr": "page {page}", "de": "Seite {page}"},
    "attachment": {
        "en": "attachment {name}",
        "fr": "pièce jointe {name}",
        "de": "Anhang {name}",
    },
    "llm_unavailable": {
        "en": "The language model is unavailable: {error}",
        "fr": "Le modèle de langage est indisponible\u00a0: {error}",
        "de": "Das Sprachmodell ist nicht verfügbar: {error}",
    },
    "new_conversation": {
        "en": "New conversation",
        "fr": "Nouvelle conversation",
        "de": "Neue Unterhaltung",
    },
    "conversations": {"en": "Conversations", "fr": "Conversations", "de": "Unterhaltungen"},
    "rename": {"en": "Rename", "fr": "Renommer", "de": "Umbenennen"},
    "delete": {"en": "Delete", "fr": "Supprimer", "de": "Löschen"},
    "feedback_comment": {
        "en": "Comment (optional)",
        "fr": "Commentaire (facultatif)",
        "de": "Kommentar (optional)",
    },
    "feedback_thanks": {
        "en": "Thank you for your feedback.",
        "fr": "Merci pour votre retour.",
        "de": "Vielen Dank für Ihr Feedback.",
    },
    "send": {"en": "Send", "fr": "Envoyer", "de": "Senden"},
    "filters": {"en": "Filters", "fr": "Filtres", "de": "Filter"},
    "folder": {"en": "Folder", "fr": "Dossier", "de": "Ordner"},
    "file_type": {"en": "File type", "fr": "Type de fichier", "de": "Dateityp"},
    "modified_after": {"en": "Modified after", "fr": "Modifié après le", "de": "Geändert nach"},
    "modified_before": {"en": "Modified before", "fr": "Modifié avant le", "de": "Geändert vor"},
    "chat": {"en": "Chat", "fr": "Discussion", "de": "Chat"},
    "library": {"en": "Library", "fr": "Bibliothèque", "de": "Bibliothek"},
    "admin": {"en": "Admin", "fr": "Administration", "de": "Verwaltung"},
    "search_by_name": {
        "en": "Search by name",
        "fr": "Rechercher par nom",
        "de": "Nach Namen suchen",
    },
    "documents": {"en": "Documents", "fr": "Documents", "de": "Dokumente"},
    "status": {"en": "Status", "fr": "État", "de": "Status"},
    "last_indexed": {
        "en": "Last indexed",
        "fr": "Dernière indexation",
        "de": "Zuletzt indexiert",
    },
    "pages": {"en": "Pages", "fr": "Pages", "de": "Seiten"},
    "failed_files": {
        "en": "Failed files",
        "fr": "Fichiers en échec",
        "de": "Fehlgeschlagene Dateien",
    },
    "reason": {"en": "Reason", "fr": "Motif", "de": "Grund"},
    "start_ingestion": {
        "en": "Start ingestion",
        "fr": "Lancer l'indexation",
        "de": "Indexierung starten",
    },
    "share": {"en": "Share", "fr": "Partage", "de": "Freigabe"},
    "last_runs": {"en": "Last runs", "fr": "Dernières exécutions", "de": "Letzte Läufe"},
    "users": {"en": "Users", "fr": "Utilisateurs", "de": "Benutzer"},
    "api_tokens": {"en": "API tokens", "fr": "Jetons d'API", "de": "API-Token"},
    "create_token": {"en": "Create token", "fr": "Créer un jeton", "de": "Token erstellen"},
    "token_label": {"en": "Label", "fr": "Libellé", "de": "Bezeichnung"},
    "token_expires_days": {
        "en": "Expires after days (0: never)",
        "fr": "Expire après jours (0 : jamais)",
        "de": "Läuft ab nach Tagen (0: nie)",
    },
    "token_created": {
        "en": "Token for {user}, shown only now: copy it into the client.",
        "fr": "Jeton pour {user}, affiché seulement maintenant : copiez-le dans le client.",
        "de": "Token für {user}, nur jetzt angezeigt: kopieren Sie es in den Client.",
    },
    "revoke_token": {"en": "Revoke token", "fr": "Révoquer le jeton", "de": "Token widerrufen"},
    "add_user": {"en": "Add user", "fr": "Ajouter un utilisateur", "de": "Benutzer hinzufügen"},
    "checking": {
        "en": "Checking the answer against its sources…",
        "fr": "Vérification de la réponse dans ses sources…",
        "de": "Die Antwort wird an ihren Quellen geprüft …",
    },
    "quoted_note": {
        "en": "Quoted from the source: the model's own wording could not be checked against it.",
        "fr": "Citation de la source : la formulation du modèle n'a pas pu y être vérifiée.",
        "de": "Zitat aus der Quelle: Die Formulierung des Modells ließ sich daran nicht prüfen.",
    },
    "erase_document": {
        "en": "Erase a document",
        "fr": "Effacer un document",
        "de": "Ein Dokument löschen",
    },
    "erase_path": {
        "en": "Path of the file, as the library shows it",
        "fr": "Chemin du fichier, tel que la bibliothèque l'affiche",
        "de": "Pfad der Datei, wie die Bibliothek ihn zeigt",
    },
    "erase_confirm": {
        "en": "Erase it from the index, page images, conversations and feedback",
        "fr": "L'effacer de l'index, des images de pages, des conversations et des retours",
        "de": "Aus Index, Seitenbildern, Unterhaltungen und Rückmeldungen löschen",
    },
    "erased": {
        "en": "Erased: {chunks} passages removed, {remaining} left.",
        "fr": "Effacé : {chunks} passages supprimés, {remaining} restants.",
        "de": "Gelöscht: {chunks} Textstellen entfernt, {remaining} verbleibend.",
    },
    "remove_user": {
        "en": "Remove user",
        "fr": "Supprimer l'utilisateur",
        "de": "Benutzer entfernen",
    },
    "own_account_change_refused": {
        "en": "Only another administrator can change your own groups or role.",
        "fr": "Seul un autre administrateur peut modifier vos propres groupes ou votre rôle.",
        "de": "Nur ein anderer Administrator kann Ihre eigenen Gruppen oder Ihre Rolle ändern.",
    },
    "groups": {"en": "Groups", "fr": "Groupes", "de": "Gruppen"},
    "is_admin": {"en": "Administrator", "fr": "Administrateur", "de": "Administrator"},
    "export_feedback": {
        "en": "Export feedback as a golden file",
        "fr": "Exporter les retours comme fichier de référence",
        "de": "Feedback als Referenzdatei exportieren",
    },
    "language": {"en": "Language", "fr": "Langue", "de": "Sprache"},
    "no_documents": {
        "en": "No documents you may read yet.",
        "fr": "Aucun document que vous êtes autorisé à lire pour l'instant.",
        "de": "Noch keine Dokumente, die Sie lesen dürfen.",
    },
    "ingestion_running": {
        "en": "Ingestion running: {done} of {total} files",
        "fr": "Indexation en cours\u00a0: {done} fichiers sur {total}",
        "de": "Indexierung läuft: {done} von {total} Dateien",
    },
    "ingestion_done": {
        "en": "Ingestion finished: {indexed} indexed, {failed} failed.",
        "fr": "Indexation terminée\u00a0: {indexed} indexés, {failed} en échec.",
        "de": "Indexierung abgeschlossen: {indexed} indexiert, {failed} fehlgeschlagen.",
    },
    "passage": {"en": "Passage", "fr": "Passage", "de": "Textstelle"},
    "page_image": {"en": "Page image", "fr": "Image de la page", "de": "Seitenbild"},
    # Shown for stored answers and sources the reader may no longer read, and for a failure.
    "source_withheld": {
        "en": "This source is no longer available to you.",
        "fr": "Cette source ne vous est plus accessible.",
        "de": "Diese Quelle ist für Sie nicht mehr verfügbar.",
    },
    "quote_withheld": {
        "en": "This answer quoted a source that is no longer available to you.",
        "fr": "Cette réponse citait une source qui ne vous est plus accessible.",
        "de": "Diese Antwort zitierte eine Quelle, die für Sie nicht mehr verfügbar ist.",
    },
    "unexpected_error": {
        "en": "Something went wrong (incident {incident}). Try again; if it persists, give "
        "this incident number to your administrator.",
        "fr": "Une erreur s'est produite (incident {incident}). Réessayez\u00a0; si elle "
        "persiste, communiquez ce numéro d'incident à votre administrateur.",
        "de": "Etwas ist schiefgegangen (Vorfall {incident}). Versuchen Sie es erneut; wenn "
        "der Fehler bleibt, nennen Sie Ihrem Administrator diese Vorfallsnummer.",
    },
}


def translate(key: str, language: str, **values: object) -> str:
    """The text `key` in `language` (English when the language is not one of ours)."""
    try:
        texts = TEXTS[key]
    except KeyError:
        raise KeyError(f"no UI text {key!r}: add it to ui.i18n.TEXTS") from None
    text = texts.get(language, texts[DEFAULT_LANGUAGE])
    try:
        return text.format(**values)
    except KeyError as exc:
        raise KeyError(f"UI text {key!r} needs the value {exc}: pass it to translate") from None


def pick_language(setting: str, browser_locale: str | None) -> str:
    """The UI language: the setting, or with "auto" the browser's first language we have.

    `browser_locale` may be a locale ("fr-FR", "de_CH") or an Accept-Language header
    ("de-CH,de;q=0.9,en;q=0.8"); anything else gives English.
    """
    if setting in LANGUAGES:
        return setting
    for part in (browser_locale or "").split(","):
        primary = part.split(";")[0].strip().replace("_", "-").split("-")[0].lower()
        if primary in LANGUAGES:
            return primary
    return DEFAULT_LANGUAGE
