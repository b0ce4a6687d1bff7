"""The users screen: list, add and edit the people who sign in (admins only; nobody is ever deleted)."""
from flask import flash, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_user
from peewee import IntegrityError

from webapp.auth.passwords import hash_password
from webapp.db import database
from webapp.models import AuditEntry, User
from webapp.users import bp
from webapp.users.forms import LAST_ADMIN, ROLE_DESCRIPTIONS, UserCreateForm, UserEditForm
from webapp.web import audit, get_or_404, go_to, render, render_form, role_required


@bp.get("/")
@role_required("admin")
def index():
    """Everyone who can sign in: role, whether active, when created and last signed in."""
    users = User.select().order_by(User.username)
    return render("users/index.html", users=users)


@bp.route("/new", methods=["GET", "POST"])
@role_required("admin")
def create():
    """Add a user with a role and a first password."""
    form = UserCreateForm()
    if form.validate_on_submit():
        user = User(username=form.username.data, role=form.role.data,
                    password_hash=hash_password(form.password.data))
        try:
            with database.atomic():
                user.save()
                audit("create", user, AuditEntry.diff(None, user.audit_snapshot()))
        except IntegrityError:
            # Someone added the same name between validation and saving.
            form.username.errors.append(_("This username is taken. Choose another one."))
        else:
            flash(_("User %(name)s added.", name=user.username), "success")
            return _to_list()
    return _form_page(form, None)


@bp.route("/<int:user_id>/edit", methods=["GET", "POST"])
@role_required("admin")
def edit(user_id):
    """Change a user's role, deactivate or reactivate them, or set a new password."""
    user = get_or_404(User, user_id)
    form = UserEditForm(user=user)
    if form.validate_on_submit():
        before = user.audit_snapshot()
        user.role, user.active = form.role.data, form.active.checked
        if form.password.data:
            user.password_hash = hash_password(form.password.data)
        with database.atomic("IMMEDIATE"):
            # Checked again under the write lock: two admins may be demoting each other right now.
            saved = user.leaves_an_admin()
            if saved:
                user.save(only=[User.role, User.active, User.password_hash])
                changes = AuditEntry.diff(before, user.audit_snapshot())
                if changes:
                    audit("update", user, changes)
        if saved and form.password.data and user.id == current_user.id:
            # A new password ends every session of the user (User.get_id); the admin who set it stays signed in.
            login_user(user)
        if saved:
            flash(_("User %(name)s saved.", name=user.username) if changes
                  else _("Nothing changed for %(name)s.", name=user.username), "success")
            return _to_list()
        (form.active if form.role.data == "admin" else form.role).errors.append(LAST_ADMIN)
    return _form_page(form, user)


def _form_page(form, user):
    """The add/edit page, or only its form for htmx; 422 when the submitted form has errors."""
    return render_form("users/form.html", form, block="user_form", user=user, role_descriptions=ROLE_DESCRIPTIONS)


def _to_list():
    return go_to(url_for("users.index"))
