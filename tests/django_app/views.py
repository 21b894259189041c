"""A home page that shows messages, and a page to change one's address."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render


def home(request: HttpRequest) -> HttpResponse:
    """Any page of the site: the base template lists pending messages."""
    return render(request, "django_app/home.html")


class AddressForm(forms.Form):
    email = forms.EmailField(label="New e-mail address")


@login_required
def account(request: HttpRequest) -> HttpResponse:
    """Change the logged-in user's address (the user model's ``EMAIL_FIELD``)."""
    form = AddressForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = request.user
        assert isinstance(user, AbstractBaseUser)  # login_required
        field = user.get_email_field_name()
        setattr(user, field, form.cleaned_data["email"])
        user.save(update_fields=[field])
        messages.success(request, "Your address was updated.")
        return redirect("home")
    return render(request, "django_app/account.html", {"form": form})
