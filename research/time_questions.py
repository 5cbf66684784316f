"""Build a BEIR-format set of questions about time: a software team's notes and decisions over 180 days,
where later notes revise earlier ones, asked at a fixed clock ("What did we decide about billing last
week?", "Where did we land on the primary database?"). It measures time phrases in search and the
preference for recent memories, and its relevance judgements come from this script's own range rules
(the README it writes spells them out), never from the product's parser, so they could be written
before that parser was tuned.

Everything is made up from the seeded templates below: 58 topics a team decides things about,
each revised three to five times (a decision, then revisions, reversals and status updates, each
changing the value), and about 220 other notes (stand-ups, logistics, questions, FYIs, chit-chat, notes
that name a topic without deciding anything, and one-off facts). Three kinds of question:

- ``dated``: a topic and a time phrase whose range holds one or two of the topic's revisions and not
  another (for ``before ...``: the latest revision before the date);
- ``latest``: a topic with no time phrase; the relevant note is its most recent revision (score 2);
- ``plain``: a one-off fact or an option named once, with no time phrase: the control.

Beyond BEIR's fields, each memory has ``created_at`` and each query ``plain`` (the question without its
time phrase), ``when`` (the phrase as it is written in the question, or an ISO range an agent would pass
as a filter), ``category`` (the kind of question), ``topic``, ``phrase`` (the phrase's rule) and ``range``
(what the rule gives);
``clock.json`` holds the moment the questions are asked and ``revisions.json`` each topic's revisions.

    python research/time_questions.py --out /tmp/sets/time-questions
    mimir-mcp eval --dataset /tmp/sets/time-questions --methods bm25,dense,hybrid
"""

from __future__ import annotations

import argparse
import calendar
import json
import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

NOW = datetime(2026, 6, 25, 16, 0, tzinfo=UTC)  # a Thursday: "this week" and "since Monday" hold several days
SPAN = timedelta(days=180)
SEED = 20260625
DATED_PER_TOPIC = 3
VALUE_QUESTIONS = 12
MIN_GAP = timedelta(days=4)  # between two revisions of a topic, so that a phrase can tell them apart
MAX_DAYS = 14  # "the last N days" goes up to two weeks
MAX_WEEKS_AGO = 10  # "N weeks ago" beyond that is not how people talk
# Notes come more often lately than long ago (a team's activity, and the memories an agent keeps, grow):
# a day d days back is drawn with a density falling like d ** (1 / RECENCY_SKEW - 1), so that the phrases
# of the last days (yesterday, since Monday) have revisions to ask about: twice a uniform draw's last week.
RECENCY_SKEW = 1.3
MONTHS = tuple(calendar.month_name)  # "", "January", ...
WEEKDAYS = tuple(calendar.day_name)  # "Monday", ...


@dataclass(frozen=True)
class Topic:
    key: str
    label: str  # "billing provider", used as "the billing provider"
    refs: tuple[str, str]  # how people name it in a sentence: "billing", "the billing provider"
    values: tuple[str, ...]  # the options, each fits "switching the {label} to {value}"
    clauses: tuple[str, ...]  # a clause stating a value: "billing goes through {v}"
    named: bool = True  # its values are names one can ask about ("Did we ever consider Adyen?")

    @property
    def names_weekdays(self) -> bool:
        """Whether a value names a weekday: "on Tuesday" next to it would read as the value, not the time."""
        return any(day in value for value in self.values for day in WEEKDAYS)


TOPICS = (
    Topic(
        "billing",
        "billing provider",
        ("billing", "the billing provider"),
        ("Stripe", "Adyen", "Braintree", "Paddle", "Chargebee"),
        ("billing goes through {v}", "we take payments and send invoices with {v}", "{v} handles all customer billing"),
    ),
    Topic(
        "database",
        "primary database",
        ("the primary database", "the main database"),
        ("PostgreSQL", "MySQL", "CockroachDB", "Amazon Aurora", "Google Spanner"),
        ("the primary database is {v}", "{v} is our system of record", "new services store their data in {v}"),
    ),
    Topic(
        "release-cadence",
        "release cadence",
        ("the release cadence", "releases"),
        (
            "weekly releases",
            "releases every two weeks",
            "monthly releases",
            "deploys on every merge",
            "two releases a week",
        ),
        ("we do {v}", "the release train moves to {v}", "the team ships {v}"),
        named=False,
    ),
    Topic(
        "on-call",
        "on-call rotation",
        ("on-call", "the on-call rotation"),
        (
            "a weekly rotation handing off on Mondays",
            "follow-the-sun between Berlin and Austin",
            "a primary and secondary pair each week",
            "daily handoffs",
            "a separate rotation per team",
        ),
        ("on-call runs as {v}", "the pager follows {v}", "we staff on-call with {v}"),
        named=False,
    ),
    Topic(
        "api-versioning",
        "API versioning scheme",
        ("API versioning", "the API versioning scheme"),
        (
            "version numbers in the URL path",
            "date-based versions in a request header",
            "media-type versions in the Accept header",
            "a version query parameter",
            "no versions and additive changes only",
        ),
        ("public endpoints use {v}", "the API is versioned with {v}", "breaking changes are handled with {v}"),
        named=False,
    ),
    Topic(
        "logging",
        "logging vendor",
        ("the logging vendor", "logging"),
        ("Datadog", "Splunk", "Grafana Loki", "Elastic Cloud", "Papertrail"),
        ("application logs ship to {v}", "{v} is where our logs live", "we send all logs to {v}"),
    ),
    Topic(
        "ci",
        "CI system",
        ("CI", "the CI system"),
        ("GitHub Actions", "CircleCI", "Jenkins", "Buildkite", "GitLab CI"),
        ("builds and tests run on {v}", "{v} runs our pipelines", "every pull request is checked by {v}"),
    ),
    Topic(
        "deploy-window",
        "deploy window",
        ("the deploy window", "deploys"),
        (
            "Tuesday to Thursday, 10:00 to 16:00",
            "any weekday before 15:00",
            "mornings only",
            "any time except Fridays",
            "any time with a second engineer watching",
        ),
        ("the deploy window is {v}", "production deploys happen {v}", "we ship to production {v}"),
        named=False,
    ),
    Topic(
        "code-review",
        "code review rule",
        ("code review", "the code review rule"),
        (
            "one approval",
            "two approvals",
            "one approval plus a code owner",
            "an approval within a day or an escalation",
            "pair review for payment code",
        ),
        ("merging needs {v}", "every pull request requires {v}", "the bar for merging is {v}"),
        named=False,
    ),
    Topic(
        "office-days",
        "office schedule",
        ("office days", "the office schedule"),
        (
            "Tuesdays and Thursdays in the office",
            "Monday, Wednesday and Thursday in the office",
            "fully remote with a monthly meetup",
            "Wednesdays in the office",
            "three office days of each team's choosing",
        ),
        ("the office schedule is {v}", "we go with {v}"),
        named=False,
    ),
    Topic(
        "error-budget",
        "error budget",
        ("the error budget", "our SLO"),
        (
            "99.9% monthly availability",
            "99.95% monthly availability",
            "99.5% per quarter",
            "99.99% for checkout and 99.9% elsewhere",
        ),
        ("the SLO target is {v}", "our error budget is based on {v}", "we commit to {v}"),
        named=False,
    ),
    Topic(
        "feature-flags",
        "feature-flag tool",
        ("feature flags", "the feature-flag tool"),
        ("LaunchDarkly", "Unleash", "Flagsmith", "ConfigCat", "GrowthBook"),
        ("feature flags are managed in {v}", "we toggle features with {v}", "{v} serves our flags"),
    ),
    Topic(
        "mobile",
        "mobile framework",
        ("the mobile framework", "the mobile app stack"),
        ("React Native", "Flutter", "native Swift and Kotlin", "Kotlin Multiplatform", "Ionic Capacitor"),
        (
            "the mobile apps are built with {v}",
            "mobile development uses {v}",
            "we build the iOS and Android apps with {v}",
        ),
    ),
    Topic(
        "data-retention",
        "data retention policy",
        ("data retention", "the retention policy"),
        (
            "90 days",
            "one year",
            "30 days for logs and two years for orders",
            "180 days",
            "seven years for invoices and 30 days for the rest",
        ),
        ("the retention period is {v}", "customer data is kept for {v}"),
        named=False,
    ),
    Topic(
        "pricing",
        "pricing model",
        ("pricing", "the pricing tiers"),
        (
            "Free, Team and Enterprise tiers",
            "per-seat pricing at $12 a month",
            "usage-based pricing",
            "Starter, Pro and Scale tiers",
            "a flat $49 per workspace",
        ),
        ("we sell with {v}", "the price list moves to {v}", "pricing is {v}"),
        named=False,
    ),
    Topic(
        "hiring",
        "hiring plan",
        ("hiring", "the hiring plan"),
        (
            "two backend engineers this half",
            "a freeze until the autumn",
            "one SRE and one designer",
            "four engineers by year end",
            "contractors only",
        ),
        ("the hiring plan is {v}", "the plan for headcount is {v}"),
        named=False,
    ),
    Topic(
        "incident-process",
        "incident process",
        ("the incident process", "incident response"),
        (
            "the on-call engineer as incident commander",
            "a dedicated incident commander rotation",
            "the engineering manager on duty",
            "the support lead",
            "whoever declares the incident",
        ),
        ("incidents are led by {v}", "every incident is run by {v}"),
        named=False,
    ),
    Topic(
        "frontend",
        "frontend framework",
        ("the frontend framework", "the web frontend"),
        ("React", "Vue", "Svelte", "Angular", "SolidJS"),
        ("the web app is written in {v}", "new frontend work uses {v}", "we build the UI with {v}"),
    ),
    Topic(
        "cloud",
        "cloud provider",
        ("the cloud provider", "hosting"),
        ("AWS", "Google Cloud", "Azure", "Hetzner", "DigitalOcean"),
        ("we host everything on {v}", "production runs on {v}", "our infrastructure lives in {v}"),
    ),
    Topic(
        "message-queue",
        "message queue",
        ("the message queue", "the event bus"),
        ("Kafka", "RabbitMQ", "Amazon SQS", "NATS", "Redis Streams"),
        ("services talk through {v}", "events flow through {v}", "background jobs are queued in {v}"),
    ),
    Topic(
        "cache",
        "caching layer",
        ("the cache", "the caching layer"),
        ("Memcached", "Valkey", "Dragonfly", "an in-process LRU", "Hazelcast"),
        ("hot reads are cached in {v}", "the cache is {v}", "we cache sessions in {v}"),
    ),
    Topic(
        "search-engine",
        "search engine",
        ("the search engine", "product search"),
        ("Elasticsearch", "OpenSearch", "Typesense", "Meilisearch", "Algolia"),
        ("product search runs on {v}", "we index the catalogue in {v}", "search queries go to {v}"),
    ),
    Topic(
        "auth",
        "auth provider",
        ("the auth provider", "login"),
        ("Auth0", "Okta", "Keycloak", "Clerk", "Amazon Cognito"),
        ("sign-in is handled by {v}", "user accounts live in {v}", "we authenticate users with {v}"),
    ),
    Topic(
        "paging",
        "paging tool",
        ("the paging tool", "alerting"),
        ("PagerDuty", "Opsgenie", "incident.io", "Splunk On-Call", "Grafana OnCall"),
        ("alerts page people through {v}", "on-call gets paged by {v}", "{v} routes our alerts"),
    ),
    Topic(
        "sprint-length",
        "sprint length",
        ("the sprint length", "the sprint cadence"),
        (
            "one-week sprints",
            "two-week sprints",
            "three-week sprints",
            "six-week cycles with a cooldown",
            "kanban without sprints",
        ),
        ("we work in {v}", "planning moves to {v}", "the team runs {v}"),
        named=False,
    ),
    Topic(
        "standup",
        "stand-up format",
        ("stand-ups", "the stand-up format"),
        (
            "a daily video call at 9:30",
            "async updates in the team channel by 10:00",
            "three calls a week",
            "a call on Mondays and Thursdays only",
            "a walking stand-up at the office",
        ),
        ("stand-up is {v}", "the daily sync becomes {v}", "we do {v} for stand-up"),
        named=False,
    ),
    Topic(
        "branching",
        "branching strategy",
        ("the branching strategy", "branching"),
        (
            "trunk-based development",
            "GitFlow",
            "release branches cut every sprint",
            "short-lived feature branches",
            "stacked pull requests",
        ),
        ("we use {v}", "the repo follows {v}", "source control follows {v}"),
        named=False,
    ),
    Topic(
        "container-platform",
        "container platform",
        ("the container platform", "where services run"),
        ("Kubernetes on EKS", "Amazon ECS", "Nomad", "plain VMs with systemd", "Google Cloud Run"),
        ("services run on {v}", "we deploy containers to {v}", "the platform team standardises on {v}"),
    ),
    Topic(
        "iac",
        "infrastructure-as-code tool",
        ("infrastructure as code", "the IaC tool"),
        ("Terraform", "Pulumi", "AWS CDK", "OpenTofu", "CloudFormation"),
        ("infrastructure is defined in {v}", "we manage cloud resources with {v}", "new infra code is written in {v}"),
    ),
    Topic(
        "analytics",
        "product analytics tool",
        ("product analytics", "the analytics tool"),
        ("Amplitude", "Mixpanel", "PostHog", "Google Analytics 4", "Heap"),
        ("product events go to {v}", "we track usage with {v}", "funnels and retention reports come from {v}"),
    ),
    Topic(
        "support-desk",
        "support desk",
        ("the support desk", "customer support tooling"),
        ("Zendesk", "Intercom", "Freshdesk", "Help Scout", "Gorgias"),
        ("support tickets are handled in {v}", "customers reach us through {v}", "the support team works out of {v}"),
    ),
    Topic(
        "wiki",
        "documentation wiki",
        ("the wiki", "internal docs"),
        ("Confluence", "Notion", "GitBook", "Docusaurus", "Outline"),
        ("internal docs live in {v}", "the team wiki moves to {v}", "we write design docs in {v}"),
    ),
    Topic(
        "issue-tracker",
        "issue tracker",
        ("the issue tracker", "ticketing"),
        ("Jira", "Linear", "GitHub Issues", "Shortcut", "YouTrack"),
        ("tickets are tracked in {v}", "the backlog lives in {v}", "we plan work in {v}"),
    ),
    Topic(
        "chat",
        "chat tool",
        ("team chat", "the chat tool"),
        ("Slack", "Microsoft Teams", "Discord", "Mattermost", "Zulip"),
        ("team chat happens in {v}", "we talk in {v}", "{v} is the company chat"),
    ),
    Topic(
        "backend-language",
        "backend language",
        ("the backend language", "the language for new services"),
        ("Go", "Rust", "Kotlin", "TypeScript", "Elixir"),
        ("new services are written in {v}", "the backend standard is {v}", "we start new services in {v}"),
    ),
    Topic(
        "password-manager",
        "password manager",
        ("the password manager", "shared credentials"),
        ("1Password", "Bitwarden", "LastPass", "Keeper", "Dashlane"),
        ("shared credentials live in {v}", "everyone keeps passwords in {v}", "team vaults are in {v}"),
    ),
    Topic(
        "laptop",
        "standard laptop",
        ("the standard laptop", "laptops for new hires"),
        ("the MacBook Pro 14", "the MacBook Air 15", "the ThinkPad X1 Carbon", "the Framework 13", "the Dell XPS 13"),
        ("new hires get {v}", "the standard laptop is {v}", "IT orders {v} by default"),
    ),
    Topic(
        "design-tool",
        "design tool",
        ("the design tool", "design tooling"),
        ("Figma", "Sketch", "Penpot", "Adobe XD", "Framer"),
        ("designs are made in {v}", "the design team works in {v}", "mockups are shared from {v}"),
    ),
    Topic(
        "email",
        "transactional email provider",
        ("transactional email", "the email provider"),
        ("SendGrid", "Postmark", "Amazon SES", "Mailgun", "Resend"),
        (
            "password resets and receipts are sent with {v}",
            "outgoing email goes through {v}",
            "{v} delivers our transactional email",
        ),
    ),
    Topic(
        "cdn",
        "CDN",
        ("the CDN", "edge caching"),
        ("Cloudflare", "Fastly", "CloudFront", "Akamai", "Bunny CDN"),
        ("static assets are served by {v}", "traffic goes through {v} at the edge", "{v} fronts the website"),
    ),
    Topic(
        "secrets",
        "secrets manager",
        ("secrets management", "the secrets manager"),
        ("HashiCorp Vault", "AWS Secrets Manager", "Doppler", "SOPS-encrypted files", "Infisical"),
        ("service secrets are stored in {v}", "production credentials come from {v}", "we keep secrets in {v}"),
    ),
    Topic(
        "tracing",
        "tracing backend",
        ("tracing", "the tracing backend"),
        ("Jaeger", "Honeycomb", "Grafana Tempo", "Lightstep", "AWS X-Ray"),
        ("traces are sent to {v}", "distributed tracing runs on {v}", "we debug latency with {v}"),
    ),
    Topic(
        "orm",
        "database access layer",
        ("the ORM", "database access"),
        ("SQLAlchemy", "Prisma", "the Django ORM", "Drizzle", "raw SQL with sqlc"),
        ("new code talks to the database through {v}", "queries are written with {v}", "the data layer uses {v}"),
    ),
    Topic(
        "coverage",
        "coverage threshold",
        ("test coverage", "the coverage threshold"),
        ("70% line coverage", "80% line coverage", "85% on new code", "no hard threshold", "90% for the core library"),
        ("the coverage gate is {v}", "the coverage rule is {v}"),
        named=False,
    ),
    Topic(
        "backups",
        "backup schedule",
        ("backups", "the backup schedule"),
        (
            "nightly full backups",
            "hourly snapshots kept for 30 days",
            "continuous WAL archiving",
            "snapshots every six hours",
            "weekly full and daily incremental backups",
        ),
        ("the database gets {v}", "we take {v}", "the backup policy is {v}"),
        named=False,
    ),
    Topic(
        "meeting-free-day",
        "meeting-free day",
        ("the meeting-free day", "no-meeting days"),
        ("Wednesday", "Friday", "Tuesday afternoon", "Thursday morning", "Monday"),
        ("the meeting-free day is {v}", "{v} stays free of meetings", "no meetings get booked on {v}"),
        named=False,
    ),
    Topic(
        "offsite",
        "offsite location",
        ("the offsite", "the team offsite"),
        ("Lisbon", "Barcelona", "Amsterdam", "Kraków", "Edinburgh"),
        ("the offsite will be in {v}", "we're booking the team offsite in {v}", "{v} hosts this year's offsite"),
    ),
    Topic(
        "frontend-linter",
        "frontend linter",
        ("frontend linting", "the JavaScript linter"),
        ("ESLint with Prettier", "Biome", "oxlint", "StandardJS", "dprint"),
        ("frontend code is checked by {v}", "the web repo lints with {v}", "pre-commit runs {v} on JavaScript"),
    ),
    Topic(
        "warehouse",
        "data warehouse",
        ("the data warehouse", "analytics storage"),
        ("Snowflake", "BigQuery", "Amazon Redshift", "ClickHouse", "Databricks"),
        ("reporting data lands in {v}", "the warehouse is {v}", "dbt models run against {v}"),
    ),
    Topic(
        "bi",
        "BI tool",
        ("dashboards", "the BI tool"),
        ("Looker", "Metabase", "Tableau", "Apache Superset", "Mode"),
        (
            "business dashboards are built in {v}",
            "finance reads its reports in {v}",
            "{v} serves the company dashboards",
        ),
    ),
    Topic(
        "payment-terms",
        "invoice payment terms",
        ("payment terms", "invoice terms"),
        ("net 30", "net 15", "net 45", "due on receipt", "net 60"),
        ("our standard terms are {v}", "customer invoices are {v}"),
        named=False,
    ),
    Topic(
        "support-sla",
        "support response target",
        ("the support SLA", "support response times"),
        (
            "four business hours",
            "one hour for urgent tickets and a day for the rest",
            "24 hours",
            "two hours",
            "eight business hours",
        ),
        ("first response to tickets is within {v}", "the support SLA is {v}", "we promise a reply within {v}"),
        named=False,
    ),
    Topic(
        "region",
        "default region",
        ("the default region", "the primary region"),
        ("us-east-1", "eu-west-1", "eu-central-1", "us-west-2", "ap-southeast-2"),
        ("new resources go in {v}", "the default region is {v}", "production is deployed to {v}"),
    ),
    Topic(
        "login-security",
        "login security policy",
        ("MFA", "the login security policy"),
        (
            "TOTP codes for everyone",
            "hardware keys for admins",
            "passkeys for all staff",
            "SSO with enforced MFA",
            "push approval on phones",
        ),
        ("company accounts require {v}", "the security policy mandates {v}", "internal tools need {v} to sign in"),
        named=False,
    ),
    Topic(
        "on-call-pay",
        "on-call compensation",
        ("on-call pay", "on-call compensation"),
        (
            "€150 per on-call week",
            "a day off after each on-call week",
            "€40 for each night paged",
            "a flat 10% stipend",
            "€200 per week plus time off in lieu",
        ),
        ("on-call is compensated with {v}", "people on call get {v}", "the on-call allowance is {v}"),
        named=False,
    ),
    Topic(
        "dependency-updates",
        "dependency update tool",
        ("dependency updates", "the dependency bot"),
        ("Dependabot", "Renovate", "a manual monthly sweep", "Snyk", "Mend"),
        (
            "dependency bumps come from {v}",
            "library upgrades are handled by {v}",
            "we keep dependencies current with {v}",
        ),
    ),
    Topic(
        "api-gateway",
        "API gateway",
        ("the API gateway", "the gateway"),
        ("Kong", "AWS API Gateway", "Envoy", "Traefik", "NGINX"),
        (
            "public traffic enters through {v}",
            "the gateway in front of our APIs is {v}",
            "rate limiting happens in {v}",
        ),
    ),
    Topic(
        "scheduler",
        "workflow scheduler",
        ("the job scheduler", "workflow orchestration"),
        ("Airflow", "Dagster", "Prefect", "cron on a single VM", "Temporal"),
        ("batch jobs are scheduled by {v}", "data pipelines run in {v}", "nightly jobs are orchestrated with {v}"),
    ),
)

# Note templates by the change a revision makes. {v}: the new value, {old}: the value it replaces (for a
# reversal, the value given up), {clause}: a sentence of the topic stating {v}.
DECISION = (
    "Decided: {clause}.",
    "Agreed in the {meeting}: {clause}.",
    "{person} made the call on {ref}: {clause}. {detail}",
    "Going with {v} for the {label}. {detail}",
    "Decision on {ref}: {clause}.",
    "After comparing the options, {clause}. {detail}",
    "We settled the {label} question: {v}.",
    "For the record, {clause}. {detail}",
)
REVISION = (
    "{Label} update: moving from {old} to {v} {reason}.",
    "Change of plan on the {label}: {clause} instead of {old}.",
    "Switching the {label} to {v} {reason}.",
    "We're dropping {old}; {clause} {starting}.",
    "{person} signed off on a new {label}: {v}. {detail}",
    "Revisiting {ref}: {clause} {reason}.",
    "New decision: {clause}, {starting}.",
    "The {label} changes to {v} {starting}. {detail}",
)
REVERSAL = (
    "{Label}: the move to {old} is off, staying with {v} for now.",
    "Rolling back the {label} change: {clause} again.",
    "{old} didn't work out, so we're back to {v} for the {label}.",
    "Reverting {ref} to {v} {reason}.",
    "Scratch the {old} plan: {clause}, as before.",
)
STATUS = (
    "{Label} status: the switch to {v} is done and {old} is retired.",
    "Quick status on {ref}: {clause} as of this sprint, {old} is gone.",
    "FYI the {label} is {v} everywhere, {old} has been turned off.",
    "Migration finished, {clause}. {detail}",
)
REASONS = (
    "to cut costs",
    "after the outage review",
    "to simplify onboarding",
    "because the renewal quote came in high",
    "per the planning session",
    "since we kept hitting its limits",
    "on the security team's advice",
    "to match what the platform team uses",
    "after the customer feedback round",
    "to reduce on-call noise",
)
STARTING = (
    "starting next quarter",
    "from the next sprint",
    "effective immediately",
    "once the migration lands",
    "after the release freeze",
    "from the first of next month",
)
DETAILS = (
    "{person} owns the rollout.",
    "Ticket to follow.",
    "Write-up is in the wiki.",
    "Questions to {person}.",
    "{person} will update the runbook.",
    "No objections in the thread.",
    "",
)
MEETINGS = ("architecture review", "weekly planning", "leads sync", "platform guild", "all-hands", "design review")
PEOPLE = (
    "Priya",
    "Jonas",
    "Marta",
    "Chen",
    "Amara",
    "Lukas",
    "Sofia",
    "Diego",
    "Hannah",
    "Omar",
    "Yuki",
    "Ravi",
    "Elena",
    "Tom",
    "Fatima",
    "Nils",
)

# Filler: notes that decide nothing.
MENTIONS = (  # name a topic, decide nothing, state no value
    "Reminder to review the {label} dashboard before the planning meeting.",
    "Can someone share the doc on {ref}? I can't find it.",
    "{person} is collecting feedback on {ref}, comments welcome in the thread.",
    "Added {ref} to the agenda for the leads sync.",
    "Who covers questions about {ref} while {person} is out?",
    "Notes from the {ref} discussion are in the wiki.",
    "Open question: does {ref} affect the mobile team at all?",
    "{person} will present the trade-offs on {ref} at the next review.",
    "Budget check on the {label} is on finance's list.",
    "Spent the afternoon reading vendor docs about {ref}, no conclusions yet.",
)
STANDUPS = (
    "Stand-up: {person} finishing the {feature}, {person2} on the {bug} bug.",
    "Stand-up notes: {person} blocked on review for the {feature}; {person2} pairing with {person3}.",
    "{person} is out sick, {person2} picks up the {bug} bug.",
    "Stand-up: the {feature} is in QA, {person} starts on the {bug} bug.",
    "{person}: the {bug} bug is fixed, writing the test now.",
    "Stand-up: {person} demoing the {feature} later, {person2} on support duty.",
)
FEATURES = (
    "CSV export",
    "dark mode",
    "team invitations flow",
    "audit log page",
    "webhook retries",
    "onboarding checklist",
    "SAML settings screen",
    "usage graphs",
    "bulk edit",
    "search filters",
    "PDF receipts",
    "admin impersonation",
)
BUGS = (
    "timezone rounding",
    "duplicate email",
    "flaky login test",
    "pagination",
    "memory leak in the worker",
    "broken avatar upload",
    "stale cache",
    "race in the importer",
    "missing translations",
    "slow dashboard query",
)
LOGISTICS = (
    "Moved the {meeting} to {hour} this time.",
    "Room {room} is booked for the {meeting}.",
    "The {meeting} is cancelled, async updates instead.",
    "Dial-in link for the {meeting} changed, check the invite.",
    "{person} will run the {meeting} while {person2} is travelling.",
    "The {meeting} runs long, blocking an extra half hour.",
)
HOURS = ("9:00", "10:30", "11:00", "13:30", "14:00", "15:30", "16:00")
ROOMS = ("Fjord", "Atlas", "Birch", "Harbor", "Summit", "Cedar")
ASKS = (
    "{person} asked whether anyone has a spare USB-C charger.",
    "Does anyone know how to get access to the staging VPN? Asking for {person}.",
    "{person} is looking for someone to review a small {feature} patch.",
    "Anyone up for lunch at the noodle place? {person} is going at noon.",
    "{person} wants to know who owns the {bug} alert.",
    "Is the {feature} behind a flag or on for everyone? {person} is asking.",
    "{person} needs a second pair of eyes on the {bug} fix.",
)
FYIS = (
    "FYI: the coffee machine on the second floor is fixed.",
    "FYI: {person} is on holiday, back in two weeks.",
    "FYI: the building's fire drill is at 11:00, please leave laptops locked.",
    "FYI: {person} shared a good talk on {feature} design in the channel.",
    "FYI: the staging environment will be slow during the load test.",
    "FYI: expense reports are due at month end.",
    "FYI: {person} updated the onboarding doc for the {feature}.",
    "FYI: new ergonomic chairs arrive for room {room}.",
)
CHATTER = (
    "{person} brought pastries, they're in the kitchen.",
    "Congrats to {person} on shipping the {feature}!",
    "{person}'s cat made a cameo in the retro, ten out of ten.",
    "Good luck to {person} running the half marathon.",
    "The plant in room {room} is thriving, thanks {person}.",
    "Welcome {person} to the team, say hi in the channel.",
    "{person} recommends the new ramen place around the corner.",
)
FACTS = (  # one note each, each with the question it answers
    ("The guest wifi password is now harbor-lights-42; it rotates every quarter.", "What is the guest wifi password?"),
    ("Priya's farewell lunch is at the Thai place on Elm Street.", "Where is Priya's farewell lunch?"),
    (
        "Staging database snapshots are kept in the acme-staging-dumps bucket.",
        "Which bucket holds the staging database snapshots?",
    ),
    ("Lost and found: a blue umbrella is on the shelf by reception.", "Has anyone found a blue umbrella?"),
    ("The parking garage gate code changed to 4471.", "What's the code for the parking garage gate?"),
    (
        "Our tax ID for vendor forms is on the finance wiki page under Company details.",
        "Where can I find the tax ID for vendor forms?",
    ),
    ("The design system's primary brand color is #2F6FEB.", "What's the hex code of the brand color?"),
    ("Marta is the point of contact for the SOC 2 auditors.", "Who talks to the SOC 2 auditors?"),
    (
        "The DevWorld conference booth needs two volunteers on day two.",
        "How many volunteers does the DevWorld booth need?",
    ),
    (
        "The legacy reporting cron runs at 02:15 and emails the ops list.",
        "At what time does the legacy reporting cron run?",
    ),
    (
        "Kitchen rule: label your food, the fridge gets cleared every Friday afternoon.",
        "When is the office fridge cleared?",
    ),
    ("Northwind asked for a copy of our pen test summary.", "Which customer asked for the pen test summary?"),
    ("Bike storage moved to the basement, next to the server room.", "Where did bike storage move to?"),
    ("Jonas runs the internal Rust study group, sign-ups are in the sheet.", "Who runs the Rust study group?"),
    (
        "The escalation address for the data center is noc@colo-east.example.",
        "What's the data center escalation email?",
    ),
    ("The new hire stipend covers a monitor up to 300 euros.", "How much is the monitor stipend for new hires?"),
    ("Demo day slides go in the shared folder called Demo Day Decks.", "Where do the demo day slides go?"),
    ("The Android signing key backup is in the safe in room 3B.", "Where is the Android signing key backup kept?"),
    ("Globex renewed their contract for two more years.", "Did Globex renew their contract?"),
    ("Our trivia night team name is Null Pointers.", "What's our trivia night team called?"),
    ("The load test target for checkout is 2,000 requests per second.", "What's the load test target for checkout?"),
    ("Chen waters the office plants, ask before moving them.", "Who waters the office plants?"),
    ("The status page is hosted at status.acme.example and the IC updates it.", "Where is our status page hosted?"),
    (
        "The accessibility audit flagged 14 issues, mostly color contrast.",
        "How many issues did the accessibility audit find?",
    ),
    ("The printer on the third floor only prints black and white.", "Can the third floor printer print in color?"),
    ("LinguaPro translates the German docs, invoices go to Elena.", "Who translates the German docs?"),
)

PERIOD_QUESTIONS = (
    "What did we decide about {ref} {when}?",
    "What was the plan for {ref} {when}?",
    "What did we say about {ref} {when}?",
    "What was decided on {ref} {when}?",
    "Which way did we go on {ref} {when}?",
    "Did we change {ref} {when}?",
    "What happened with {ref} {when}?",
    "What was the call on {ref} {when}?",
    "Remind me what we agreed about {ref} {when}.",
    "{When}, what did we agree on {ref}?",
)
SINCE_QUESTIONS = (
    "Any change to {ref} {when}?",
    "What's new on {ref} {when}?",
    "Has {ref} changed {when}?",
    "Did anything happen with {ref} {when}?",
    "What have we decided about {ref} {when}?",
    "Any updates on {ref} {when}?",
    "{When}, has anything changed for {ref}?",
)
BEFORE_QUESTIONS = (
    "What was the plan for {ref} {when}?",
    "Where did {ref} stand {when}?",
    "What had we settled on for {ref} {when}?",
    "What was the {label} {when}?",
    "What had we decided about {ref} {when}?",
    "{When}, what was the call on {ref}?",
)
LATEST_QUESTIONS = (
    "What's the current plan for {ref}?",
    "Where did we land on {ref}?",
    "Latest on {ref}?",
    "What's the latest decision on {ref}?",
    "Where do things stand with {ref}?",
    "What did we end up choosing for {ref}?",
    "What's our current {label}?",
    "What's the most recent call on {ref}?",
    "Remind me where {ref} ended up.",
)
VALUE_QUESTIONS_TEMPLATES = (
    "Did we ever consider {v} for {ref}?",
    "Was {v} ever an option for {ref}?",
    "Did {v} come up for {ref}?",
    "Was {v} ever on the table for {ref}?",
)


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def week_start(day: date) -> date:
    """The Monday of ``day``'s calendar week."""
    return day - timedelta(days=day.weekday())


def next_month(first: date) -> date:
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1)


def latest_date(today: date, month: int, day: int) -> date:
    """The most recent ``day`` of ``month`` that is not after ``today``."""
    candidate = date(today.year, month, day)
    return candidate if candidate <= today else date(today.year - 1, month, day)


def latest_weekday_before(today: date, weekday: int) -> date:
    """The most recent day with ``weekday`` strictly before ``today``."""
    return today - timedelta(days=(today.weekday() - weekday) % 7 or 7)


def ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Span:
    """A half-open range [start, end); no start means from the beginning of time."""

    start: datetime | None
    end: datetime

    def holds(self, moment: datetime) -> bool:
        return (self.start is None or self.start <= moment) and moment < self.end


@dataclass(frozen=True)
class Phrase:
    rule: str  # "last-week", "in-month", "before", "iso", ...
    text: str  # as written in the question (for "iso", passed beside it)
    span: Span


# One constructor per phrase rule: the text and the range its rule gives at ``now``.


def yesterday(now: datetime) -> Phrase:
    today = now.date()
    return Phrase("yesterday", "yesterday", Span(midnight(today - timedelta(days=1)), midnight(today)))


def this_week(now: datetime) -> Phrase:
    monday = week_start(now.date())
    return Phrase("this-week", "this week", Span(midnight(monday), midnight(monday + timedelta(days=7))))


def last_week(now: datetime) -> Phrase:
    monday = week_start(now.date())
    return Phrase("last-week", "last week", Span(midnight(monday - timedelta(days=7)), midnight(monday)))


def weeks_ago(now: datetime, weeks: int) -> Phrase:
    monday = week_start((now - timedelta(days=7 * weeks)).date())
    return Phrase("weeks-ago", f"{weeks} weeks ago", Span(midnight(monday), midnight(monday + timedelta(days=7))))


def this_month(now: datetime) -> Phrase:
    first = now.date().replace(day=1)
    return Phrase("this-month", "this month", Span(midnight(first), midnight(next_month(first))))


def last_month(now: datetime) -> Phrase:
    first = (now.date().replace(day=1) - timedelta(days=1)).replace(day=1)
    return Phrase("last-month", "last month", Span(midnight(first), midnight(next_month(first))))


def in_month(now: datetime, month: int) -> Phrase:
    first = latest_date(now.date(), month, 1)
    return Phrase("in-month", f"in {MONTHS[month]}", Span(midnight(first), midnight(next_month(first))))


def on_weekday(now: datetime, weekday: int) -> Phrase:
    day = latest_weekday_before(now.date(), weekday)
    return Phrase("on-weekday", f"on {WEEKDAYS[weekday]}", Span(midnight(day), midnight(day + timedelta(days=1))))


def since_weekday(now: datetime, weekday: int) -> Phrase:
    day = latest_weekday_before(now.date(), weekday)
    return Phrase("since-weekday", f"since {WEEKDAYS[weekday]}", Span(midnight(day), now))


def since_date(now: datetime, month: int, day: int) -> Phrase:
    start = latest_date(now.date(), month, day)
    return Phrase("since-date", f"since {day} {MONTHS[month]}", Span(midnight(start), now))


def last_days(now: datetime, days: int, wording: str) -> Phrase:
    return Phrase("last-days", wording.format(days=days), Span(now - timedelta(days=days), now))


def before_date(now: datetime, month: int, day: int) -> Phrase:
    end = latest_date(now.date(), month, day)
    return Phrase("before", f"before the {ordinal(day)} of {MONTHS[month]}", Span(None, midnight(end)))


def iso_range(first: date, last: date) -> Phrase:
    span = Span(midnight(first), midnight(last + timedelta(days=1)))
    return Phrase("iso", f"{first.isoformat()}..{last.isoformat()}", span)


LAST_DAYS_WORDINGS = ("in the last {days} days", "in the past {days} days", "over the past {days} days")
PHRASE_FAMILY = {"since-weekday": "since", "since-date": "since", "before": "before"}


@dataclass(eq=False)  # compared and hashed by identity: two notes are never the same note
class Note:
    id: str
    text: str
    created_at: datetime
    topic: str | None = None  # set on the revisions of a topic only
    value: str | None = None
    change: str | None = None  # decision, revision, reversal, status


@dataclass
class Question:
    text: str
    plain: str
    when: str | None
    kind: str  # dated, latest, plain
    relevant: dict[Note, int]
    topic: str | None = None
    phrase: Phrase | None = None


@dataclass
class Collection:
    now: datetime
    notes: list[Note]
    questions: list[Question]
    revisions: dict[str, list[Note]] = field(default_factory=dict)


def judged(phrase: Phrase, revisions: list[Note]) -> list[Note]:
    """The revisions of a topic that answer a question with ``phrase``, or none where the phrase does not
    single them out: one or two revisions in its range (for "before": the latest one), another outside."""
    inside = [note for note in revisions if phrase.span.holds(note.created_at)]
    if phrase.rule == "before":
        inside = inside[-1:]
    if not inside or len(inside) > 2 or all(phrase.span.holds(note.created_at) for note in revisions):
        return []
    return inside


def capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def tidy(text: str) -> str:
    return capitalised(" ".join(text.split()).replace(" .", ".").replace(" ,", ","))


def working_moment(rng: random.Random, now: datetime) -> datetime:
    """A moment of the 180 days before ``now``: working hours, on a weekday nine times in ten, more often
    lately than long ago (``RECENCY_SKEW``)."""
    while True:
        day = now.date() - timedelta(days=int(181 * rng.random() ** RECENCY_SKEW))
        if day.weekday() >= 5 and rng.random() < 0.9:
            continue
        moment = midnight(day) + timedelta(minutes=rng.randrange(8 * 60 + 30, 18 * 60 + 30))
        if now - SPAN <= moment < now:
            return moment


def revision_notes(topic: Topic, rng: random.Random, now: datetime) -> list[Note]:
    """Three to five decisions on ``topic``, each changing its value, at least ``MIN_GAP`` apart."""
    count = rng.choice((3, 4, 4, 5))
    while True:
        moments = sorted(working_moment(rng, now) for _ in range(count))
        if all(later - earlier >= MIN_GAP for earlier, later in zip(moments, moments[1:], strict=False)):
            break
    history: list[str] = [rng.choice(topic.values)]
    changes = ["decision"]
    for _ in range(count - 1):
        unused = [value for value in topic.values if value not in history]
        if len(history) >= 2 and (not unused or rng.random() < 0.2):  # back to the value before
            history.append(history[-2])
            changes.append("reversal")
        else:
            history.append(rng.choice(unused))
            changes.append("status" if rng.random() < 0.25 else "revision")
    templates = {"decision": DECISION, "revision": REVISION, "reversal": REVERSAL, "status": STATUS}
    used: set[str] = set()
    notes = []
    for index, (moment, value, change) in enumerate(zip(moments, history, changes, strict=True)):
        template = rng.choice([option for option in templates[change] if option not in used])
        used.add(template)
        person = rng.choice(PEOPLE)
        ref = rng.choice(topic.refs)
        text = template.format(
            v=value,
            old=history[index - 1] if index else "",
            clause=rng.choice(topic.clauses).format(v=value),
            label=topic.label,
            Label=capitalised(topic.label),
            ref=ref,
            person=person,
            meeting=rng.choice(MEETINGS),
            reason=rng.choice(REASONS),
            starting=rng.choice(STARTING),
            detail=rng.choice(DETAILS).format(person=rng.choice([p for p in PEOPLE if p != person])),
        )
        notes.append(Note("", tidy(text), moment, topic.key, value, change))
    return notes


def filler_notes(rng: random.Random, now: datetime) -> tuple[list[Note], list[Question]]:
    """Notes that decide nothing, and a question for each one-off fact among them."""
    texts: list[str] = []

    def add(templates: tuple[str, ...], count: int, **extra: tuple[str, ...]) -> None:
        made = 0
        while made < count:
            people = rng.sample(PEOPLE, 3)
            slots = {name: rng.choice(options) for name, options in extra.items()}
            text = tidy(
                rng.choice(templates).format(
                    person=people[0],
                    person2=people[1],
                    person3=people[2],
                    feature=rng.choice(FEATURES),
                    bug=rng.choice(BUGS),
                    meeting=rng.choice(MEETINGS),
                    hour=rng.choice(HOURS),
                    room=rng.choice(ROOMS),
                    **slots,
                )
            )
            if text not in texts:
                texts.append(text)
                made += 1

    for _ in range(45):  # a topic named, nothing decided
        topic = rng.choice(TOPICS)
        add(MENTIONS, 1, ref=topic.refs, label=(topic.label,))
    add(STANDUPS, 50)
    add(LOGISTICS, 30)
    add(ASKS, 25)
    add(FYIS, 22)
    add(CHATTER, 20)
    notes = [Note("", text, working_moment(rng, now)) for text in texts]
    questions = []
    for text, question in FACTS:
        note = Note("", text, working_moment(rng, now))
        notes.append(note)
        questions.append(Question(question, question, None, "plain", {note: 1}))
    return notes, questions


def candidate_phrases(
    now: datetime, revisions: list[Note], index: int, topic: Topic, rng: random.Random
) -> list[Phrase]:
    """Phrases whose range holds revision ``index`` (whether they single it out is ``judged``'s to say)."""
    today = now.date()
    moment = revisions[index].created_at
    day = moment.date()
    before = revisions[index - 1].created_at.date() if index else None
    after = revisions[index + 1].created_at.date() if index + 1 < len(revisions) else None
    phrases = [yesterday(now), this_week(now), last_week(now), this_month(now), last_month(now)]
    phrases.append(in_month(now, day.month))
    weeks = (week_start(today) - week_start(day)).days // 7
    if 2 <= weeks <= MAX_WEEKS_AGO:
        phrases.append(weeks_ago(now, weeks))
    if not topic.names_weekdays and today - timedelta(days=7) <= day < today:
        phrases.append(on_weekday(now, day.weekday()))
        earliest = max(today - timedelta(days=7), before + timedelta(days=1) if before else today - timedelta(days=7))
        days = [earliest + timedelta(days=n) for n in range((day - earliest).days + 1)]
        starts = [start for start in days if start.weekday() < 5]  # "since Sunday" is rarely said
        if starts:
            phrases.append(since_weekday(now, rng.choice(starts).weekday()))
    if before is not None:
        start = before + timedelta(days=1 + rng.randrange((day - before).days))
        phrases.append(since_date(now, start.month, start.day))
    needed = math.ceil((now - moment) / timedelta(days=1))
    if needed <= MAX_DAYS:
        phrases.append(last_days(now, rng.randint(max(2, needed), MAX_DAYS), rng.choice(LAST_DAYS_WORDINGS)))
    if after is not None:
        ends = [day + timedelta(days=n) for n in range(1, (after - day).days + 1)]
        firsts = [end for end in ends if end.day == 1]
        end = rng.choice(firsts or ends)
        phrases.append(before_date(now, end.month, end.day))
    first = (before + timedelta(days=1)) if before else day - timedelta(days=rng.randrange(30))
    last = (after - timedelta(days=1)) if after else today
    first = first + timedelta(days=rng.randrange((day - first).days + 1))
    last = day + timedelta(days=rng.randrange((last - day).days + 1))
    phrases.append(iso_range(first, last))
    return phrases


def question_text(template: str, phrase: Phrase, topic: Topic, rng: random.Random) -> tuple[str, str, str]:
    """A question from ``template``: its text, its plain form (without the phrase) and the phrase as written."""
    ref = rng.choice(topic.refs)
    if phrase.rule == "iso":
        template = template.replace("{When}, ", "").replace(" {when}", "")
        plain = tidy(template.format(ref=ref, label=topic.label))
        return plain, plain, phrase.text
    leading = template.startswith("{When}")
    when = capitalised(phrase.text) if leading else phrase.text
    text = tidy(template.format(ref=ref, label=topic.label, when=phrase.text, When=when))
    plain = tidy(template.replace("{When}, ", "").replace(" {when}", "").format(ref=ref, label=topic.label))
    return text, plain, when


def dated_questions(
    now: datetime, topic: Topic, revisions: list[Note], rng: random.Random, used: Counter[str]
) -> list[Question]:
    """Up to ``DATED_PER_TOPIC`` questions about ``topic`` with a time phrase, each of a different rule,
    the rule picked among those asked least so far so that the rare ones (yesterday) get in when they can."""
    pool: dict[str, tuple[Phrase, list[Note]]] = {}
    for index in range(len(revisions)):
        for phrase in candidate_phrases(now, revisions, index, topic, rng):
            relevant = judged(phrase, revisions)
            if revisions[index] in relevant and phrase.text not in pool:
                pool[phrase.text] = (phrase, relevant)
    questions: list[Question] = []
    targets: Counter[Note] = Counter()
    for _ in range(DATED_PER_TOPIC):
        asked = {question.phrase.rule for question in questions if question.phrase}
        options = [
            (phrase, relevant)
            for phrase, relevant in pool.values()
            if phrase.rule not in asked and all(targets[note] < 2 for note in relevant)
        ]
        if not options:
            break
        fewest = min(used[phrase.rule] for phrase, _ in options)
        phrase, relevant = rng.choice([option for option in options if used[option[0].rule] == fewest])
        used[phrase.rule] += 1
        targets.update(relevant)
        family = PHRASE_FAMILY.get(phrase.rule, "period")
        templates = {"since": SINCE_QUESTIONS, "before": BEFORE_QUESTIONS, "period": PERIOD_QUESTIONS}[family]
        text, plain, when = question_text(rng.choice(templates), phrase, topic, rng)
        questions.append(Question(text, plain, when, "dated", dict.fromkeys(relevant, 1), topic.key, phrase))
    return questions


def build(seed: int = SEED, now: datetime = NOW) -> Collection:
    rng = random.Random(seed)
    notes: list[Note] = []
    questions: list[Question] = []
    revisions: dict[str, list[Note]] = {}
    for topic in TOPICS:
        revisions[topic.key] = revision_notes(topic, rng, now)
        notes.extend(revisions[topic.key])
    filler, fact_questions = filler_notes(rng, now)
    notes.extend(filler)
    questions.extend(fact_questions)

    used: Counter[str] = Counter()
    for topic in rng.sample(TOPICS, len(TOPICS)):
        questions.extend(dated_questions(now, topic, revisions[topic.key], rng, used))
    for topic in TOPICS:
        text = tidy(rng.choice(LATEST_QUESTIONS).format(ref=rng.choice(topic.refs), label=topic.label))
        latest = revisions[topic.key][-1]
        questions.append(Question(text, text, None, "latest", {latest: 2}, topic.key))

    # An option named in exactly one note: asked about with no time phrase, one right answer.
    named_once = []
    for topic in TOPICS:
        if not topic.named:
            continue
        for note in revisions[topic.key]:
            value = note.value or ""
            if value[:1].isupper() and sum(value in other.text for other in notes) == 1:
                named_once.append((topic, note))
                break
    for topic, note in rng.sample(named_once, min(VALUE_QUESTIONS, len(named_once))):
        text = rng.choice(VALUE_QUESTIONS_TEMPLATES).format(v=note.value, ref=rng.choice(topic.refs))
        questions.append(Question(text, text, None, "plain", {note: 1}, topic.key))

    notes.sort(key=lambda note: note.created_at)
    for number, note in enumerate(notes, start=1):
        note.id = f"n{number:04d}"
    rng.shuffle(questions)
    collection = Collection(now, notes, questions, revisions)
    check(collection)
    return collection


def check(collection: Collection) -> None:
    """The collection's promises, raised as errors where one is broken."""

    def require(condition: bool, message: str) -> None:
        if not condition:
            raise AssertionError(message)

    now = collection.now
    ids = [note.id for note in collection.notes]
    require(len(ids) == len(set(ids)), "memory ids are not unique")
    texts = [note.text for note in collection.notes]
    require(len(texts) == len(set(texts)), "two memories have the same text")
    query_texts = [(question.text, question.when) for question in collection.questions]
    require(len(query_texts) == len(set(query_texts)), "two queries are the same")
    require(now.weekday() not in (0, 5, 6), "the clock must be a weekday other than Monday")
    for note in collection.notes:
        require(now - SPAN <= note.created_at < now, f"{note.id} is outside the 180 days before the clock")
    known = set(collection.notes)
    for question in collection.questions:
        require(bool(question.relevant), f"{question.text!r} has no relevant memory")
        require(set(question.relevant) <= known, f"{question.text!r} judges an unknown memory")
        if question.kind != "dated":
            require(question.when is None, f"{question.text!r} is {question.kind} but has a time phrase")
            require(question.plain == question.text, f"{question.text!r}: plain differs from text")
            continue
        phrase, topic, when = question.phrase, question.topic, question.when
        if phrase is None or topic is None or when is None:
            raise AssertionError(f"{question.text!r} is dated but has no phrase, topic or when")
        revisions = collection.revisions[topic]
        relevant = [note for note in revisions if note in question.relevant]
        inside = [note for note in revisions if phrase.span.holds(note.created_at)]
        require(len(relevant) == len(question.relevant) <= 2, f"{question.text!r}: judges other than revisions")
        require(len(inside) < len(revisions), f"{question.text!r}: no revision of the topic outside the range")
        expected = inside[-1:] if phrase.rule == "before" else inside
        require(relevant == expected, f"{question.text!r}: the judged revisions are not those the range selects")
        if phrase.rule == "iso":
            require(question.text == question.plain, f"{question.text!r}: an ISO range is never in the text")
        else:
            require(when in question.text and when not in question.plain, f"{question.text!r}: when or plain is off")
    for key, revisions in collection.revisions.items():
        latest = max(revisions, key=lambda note: note.created_at)
        for question in collection.questions:
            if question.kind == "latest" and question.topic == key:
                require(question.relevant == {latest: 2}, f"{question.text!r}: not the topic's latest revision")


def write(collection: Collection, folder: Path) -> None:
    """The collection as a BEIR folder (what ``load_dataset`` reads) with the time fields beside."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)

    def lines(rows: Sequence[Mapping[str, object]]) -> str:
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)

    corpus = [{"_id": n.id, "title": "", "text": n.text, "created_at": stamp(n.created_at)} for n in collection.notes]
    (folder / "corpus.jsonl").write_text(lines(corpus), encoding="utf-8")
    queries: list[dict[str, object]] = []
    for number, question in enumerate(collection.questions, start=1):
        phrase = question.phrase
        span = phrase.span if phrase else None
        queries.append(
            {
                "_id": f"q{number:03d}",
                "text": question.text,
                "plain": question.plain,
                "when": question.when,
                "category": question.kind,
                "topic": question.topic,
                "phrase": phrase.rule if phrase else None,
                "range": [stamp(span.start) if span.start else None, stamp(span.end)] if span else None,
            }
        )
    (folder / "queries.jsonl").write_text(lines(queries), encoding="utf-8")
    qrels = ["query-id\tcorpus-id\tscore\n"]
    for number, question in enumerate(collection.questions, start=1):
        qrels.extend(f"q{number:03d}\t{note.id}\t{score}\n" for note, score in question.relevant.items())
    (folder / "qrels" / "test.tsv").write_text("".join(qrels), encoding="utf-8")
    clock = {"now": stamp(collection.now), "tz": "UTC"}
    (folder / "clock.json").write_text(json.dumps(clock, indent=2) + "\n", encoding="utf-8")
    history = {
        key: [{"id": n.id, "created_at": stamp(n.created_at), "value": n.value, "change": n.change} for n in notes]
        for key, notes in collection.revisions.items()
    }
    (folder / "revisions.json").write_text(json.dumps(history, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / "README.md").write_text(readme(collection), encoding="utf-8")


def readme(collection: Collection) -> str:
    kinds = Counter(question.kind for question in collection.questions)
    rules = Counter(question.phrase.rule for question in collection.questions if question.phrase)
    revisions = sum(len(notes) for notes in collection.revisions.values())
    rule_rows = "\n".join(f"| {rule} | {count} |" for rule, count in sorted(rules.items()))
    return f"""# time-questions

A software team's notes and decisions over the 180 days before {stamp(collection.now)} (a
{collection.now.strftime("%A")}, clock.json), where later notes revise earlier ones, and questions asked at
that moment, some with a time phrase ("What did we decide about billing last week?"), some about the
current state ("Where did we land on the primary database?"). Built by research/time_questions.py
(seeded, no network, no model); its relevance judgements follow the range rules below, computed by the
script itself, not by the product's time parser.

## Counts

- memories: {len(collection.notes)} ({revisions} revisions of {len(collection.revisions)} topics, \
{len(collection.notes) - revisions} other notes)
- queries: {len(collection.questions)}: {kinds["dated"]} dated, {kinds["latest"]} latest, {kinds["plain"]} plain

| phrase rule | dated queries |
|---|---|
{rule_rows}

## How it was built

Each topic (billing provider, primary database, release cadence, ...) has 4 or 5 options and 3 to 5
revisions at random working hours (weekdays nine times in ten), at least 4 days apart: a decision, then
revisions, reversals (back to the value before) and status updates, each changing the value, each from a
different template. The other notes are stand-ups, meeting logistics, questions, FYIs and chit-chat,
notes that name a topic without deciding anything, and one-off facts.

- `dated`: a topic and a time phrase whose range holds one or two of the topic's revisions and leaves
  at least one out; those revisions are relevant (score 1). For `before the <d> of <Month>` the relevant
  revision is the latest one before that day. Up to {DATED_PER_TOPIC} per topic, each of a different rule,
  the rule picked among the least asked so far. For the `iso` rule the question has no time phrase in its
  text: the range is given only in `when` (`<from>..<to>`), as an agent passes a structured filter.
- `latest`: a topic with no time phrase; relevant: its most recent revision only (score 2).
- `plain`: no time phrase; a one-off fact, or an option that only one note names; one relevant note.

## Fields beyond BEIR

- corpus.jsonl: `created_at` (UTC, `Z`).
- queries.jsonl: `plain` (the question without its time phrase), `when` (the phrase as written in the
  question, or the ISO range; null when none), `category` (dated, latest, plain), `topic`, `phrase` (the rule)
  and `range` (`[start, end)` that rule gives; start null for `before`).
- revisions.json: each topic's revisions in order: id, created_at, value, change.

## Range rules

Half-open `[start, end)` in the clock's time zone; weeks start on Monday; days are calendar days.

- `yesterday`: the day before the clock's date.
- `this week` / `last week`: the current / previous calendar week (Monday 00:00 to Monday 00:00).
- `this month` / `last month`: the current / previous calendar month.
- `in <Month>`: the most recent such month whose first day is not after the clock.
- `since <Weekday>`: from the most recent such weekday strictly before today, 00:00, to the clock.
- `on <Weekday>`: the whole of the most recent such weekday strictly before today.
- `since <d> <Month>`: from the most recent such day not after today, 00:00, to the clock.
- `in the last N days` / `in the past N days` / `over the past N days`: [clock - N x 24 h, clock).
- `N weeks ago`: the calendar week that holds the clock minus N x 7 days.
- `before the <d> of <Month>`: everything before that day 00:00 (the most recent such day not after
  today); relevant: the topic's latest revision before it.
- `<a>..<b>` (ISO dates, in `when` only): [a 00:00, the day after b 00:00).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=SEED, help="another seed makes another collection of the kind")
    args = parser.parse_args()
    collection = build(args.seed)
    write(collection, args.out)
    kinds = Counter(question.kind for question in collection.questions)
    print(
        f"{len(collection.notes)} memories, {len(collection.questions)} queries "
        f"({', '.join(f'{count} {kind}' for kind, count in sorted(kinds.items()))}) -> {args.out}"
    )


if __name__ == "__main__":
    main()
