"""API tokens: list, create (the token is shown once, in full) and revoke; admins only, every change audited."""
from flask import url_for
from flask_babel import gettext as _
from flask_login import current_user

from webapp.db import database
from webapp.models import ApiToken, utcnow
from webapp.tokens import bp
from webapp.tokens.forms import TokenForm
from webapp.web import audit, get_or_404, go_to, refuse, render, render_form, role_required


@bp.get("/")
@role_required("admin")
def index():
    """Every token: name, prefix, its owner, when created, last use, whether revoked or inactive (and why)."""
    tokens = ApiToken.with_owners().order_by(ApiToken.revoked_at.is_null(False), ApiToken.created_at.desc(),
                                             ApiToken.id.desc())
    return render("tokens/index.html", tokens=list(tokens))


@bp.route("/new", methods=["GET", "POST"])
@role_required("admin")
def create():
    """Create a token and show it once; afterwards only its first characters are ever shown."""
    form = TokenForm()
    if form.validate_on_submit():
        with database.atomic():
            token, clear = ApiToken.issue(form.name.data, created_by=current_user.id)
            # The hash stays out of the log too: it is what a stolen database would be searched for.
            audit("create", token, {"name": [None, token.name], "prefix": [None, token.prefix]})
        body, status = render("tokens/new.html", block="token_form", form=form, token=token, clear=clear)
        # The only time the clear token exists outside the caller's hands: keep it out of every cache.
        return body, status, {"Cache-Control": "no-store"}
    return render_form("tokens/new.html", form, block="token_form", token=None, clear=None)


@bp.post("/<int:token_id>/revoke")
@role_required("admin")
def revoke(token_id):
    """Revoke a token (after the page asked): API calls with it get 401 from now on. It stays listed."""
    with database.atomic("IMMEDIATE"):
        token = get_or_404(ApiToken, token_id)
        if token.revoked:
            return refuse(_("The token “%(name)s” was already revoked.", name=token.name), url_for("tokens.index"))
        token.revoked_at = utcnow()
        token.save(only=[ApiToken.revoked_at])
        audit("revoke", token, {"revoked_at": [None, token.revoked_at.isoformat(sep=" ", timespec="seconds")]})
    message = _("Token “%(name)s” revoked: API calls with it are refused from now on.", name=token.name)
    return go_to(url_for("tokens.index"), message)
