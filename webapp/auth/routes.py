"""Sign in and out, the first-run setup of the first administrator, and the language switch."""
from flask import abort, current_app, flash, redirect, request, session, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user

from webapp.auth import bp
from webapp.auth.forms import LoginForm, SetupForm
from webapp.auth.passwords import (
    authenticate,
    forget_setup_code,
    hash_password,
    setup_needed,
)
from webapp.auth.throttle import login_locked, window_seconds
from webapp.db import database
from webapp.models import User, utcnow
from webapp.web import audit, render, render_form, safe_next

LANGUAGE_COOKIE_AGE = 365 * 24 * 3600


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Sign in with username and password."""
    if setup_needed():
        return redirect(url_for("auth.setup"))
    if current_user.is_authenticated:
        return redirect(url_for("accounts.index"))
    form = LoginForm()
    if form.validate_on_submit():
        username = form.username.data.strip().lower()[:64]
        if login_locked(username, request.remote_addr):
            return _locked_out(form, username)
        user = authenticate(form.username.data, form.password.data)
        with database.atomic():
            if user is None:
                audit("login_failed", object_type="user", object_name=username)
            else:
                user.last_login_at = utcnow()
                user.save()
                audit("login", user, actor=user)
        if user is not None:
            _sign_in(user)
            return redirect(safe_next(request.args.get("next"), url_for("accounts.index")))
        # One message whatever was wrong, so the form does not tell which usernames exist.
        form.password.errors.append(_("Wrong username or password."))
    return render_form("auth/login.html", form)


def _sign_in(user):
    """Start the user's session; permanent, so it ends PERMANENT_SESSION_LIFETIME after its cookie was last signed
    (now, or when the session last changed)."""
    # A new session: nothing from the anonymous one carries over, above all not Flask-WTF's CSRF secret, which a
    # page shown before sign-in may have leaked. The language lives in its own cookie, so it stays.
    session.clear()
    session.permanent = True
    login_user(user)


def _locked_out(form, username):
    """429 with the form: the same words whether or not the username exists; the password is not checked."""
    with database.atomic():
        audit("login_locked", object_type="user", object_name=username)
    minutes = -(-window_seconds() // 60)
    form.password.errors.append(_("Too many failed sign-in attempts. Wait %(minutes)s minutes and try again.",
                                  minutes=minutes))
    body, _status = render("auth/login.html", form=form)
    return body, 429, {"Retry-After": str(window_seconds())}


@bp.post("/logout")
def logout():
    """Sign out: every session of this user ends on the server, not only this browser's cookie."""
    try:
        if current_user.is_authenticated:
            with database.atomic():
                current_user.end_sessions()
                audit("logout", current_user)
    finally:
        # This browser is signed out even when the write above fails (a full disk answers 503): the user asked to
        # leave, and a cookie left signed in would outlive the page saying otherwise.
        logout_user()
        session.clear()
    flash(_("You are signed out."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/setup", methods=["GET", "POST"])
def setup():
    """Create the first administrator with the one-time code printed in the console; gone afterwards."""
    if not setup_needed():
        abort(404)
    form = SetupForm()
    if form.validate_on_submit():
        with database.atomic("IMMEDIATE"):
            if not setup_needed():
                abort(404)
            user = User.create(username=form.username.data.lower(),
                               password_hash=hash_password(form.password.data), role="admin")
            audit("create", user, actor=user, changes={"role": [None, "admin"]})
        forget_setup_code(current_app.instance_path)
        _sign_in(user)
        flash(_("Welcome! Your administrator account is ready. Start by adding an SMTP account."), "success")
        return redirect(url_for("accounts.index"))
    return render_form("auth/setup.html", form)


@bp.post("/language")
def language():
    """Switch the interface language and remember it (cookie, and the user's profile when signed in)."""
    chosen = request.form.get("lang", "")
    if chosen not in current_app.config["LANGUAGES"]:
        abort(400)
    if current_user.is_authenticated:
        User.update(locale=chosen).where(User.id == current_user.id).execute()
    response = redirect(safe_next(request.form.get("next"), url_for("accounts.index")))
    response.set_cookie("lang", chosen, max_age=LANGUAGE_COOKIE_AGE, httponly=True, samesite="Lax")
    return response
