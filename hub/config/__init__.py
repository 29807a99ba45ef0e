"""The hub's one typed configuration, loaded from TOML and validated once at start.

``"${NAME}"`` (or ``"${NAME:-default}"``) anywhere in a string value is read from
the environment. Every problem is reported with its key path
(``telegram.token: missing``); ``config.example.toml`` documents every key.
The sections live by concern (``sections``: hub-wide, ``channel_sections``,
``rules``: routing and SLA; ``desk``: canned answers; ``model``: the whole;
``load``: reading it); their public names are all here.
"""

from hub.config.channel_sections import DEFAULT_ACCEPT as DEFAULT_ACCEPT
from hub.config.channel_sections import RESERVED_FIELDS as RESERVED_FIELDS
from hub.config.channel_sections import STANDARD_FIELDS as STANDARD_FIELDS
from hub.config.channel_sections import EmailSection as EmailSection
from hub.config.channel_sections import FormField as FormField
from hub.config.channel_sections import FormSection as FormSection
from hub.config.channel_sections import ImapSection as ImapSection
from hub.config.channel_sections import OutboundSmtpSection as OutboundSmtpSection
from hub.config.channel_sections import SmtpServerSection as SmtpServerSection
from hub.config.channel_sections import SmtpUser as SmtpUser
from hub.config.channel_sections import TelegramSection as TelegramSection
from hub.config.channel_sections import WebformSection as WebformSection
from hub.config.checks import Hours as Hours
from hub.config.checks import KnownStage as KnownStage
from hub.config.checks import Listen as Listen
from hub.config.checks import QuietHours as QuietHours
from hub.config.checks import Section as Section
from hub.config.checks import TimeZone as TimeZone
from hub.config.desk import TEMPLATE_FIELDS as TEMPLATE_FIELDS
from hub.config.desk import DeskSection as DeskSection
from hub.config.desk import TemplateSection as TemplateSection
from hub.config.load import load as load
from hub.config.load import parse as parse
from hub.config.load import resolve_path as resolve_path
from hub.config.load import sqlite_file as sqlite_file
from hub.config.model import Config as Config
from hub.config.rules import Priority as Priority
from hub.config.rules import RoutingSection as RoutingSection
from hub.config.rules import RoutingStrategy as RoutingStrategy
from hub.config.rules import RuleSection as RuleSection
from hub.config.rules import SlaPolicy as SlaPolicy
from hub.config.rules import SlaSection as SlaSection
from hub.config.sections import DEFAULT_REPLY_WINDOW_DAYS as DEFAULT_REPLY_WINDOW_DAYS
from hub.config.sections import SUPPORTED_DRIVERS as SUPPORTED_DRIVERS
from hub.config.sections import AdminSection as AdminSection
from hub.config.sections import CampaignsSection as CampaignsSection
from hub.config.sections import ConsoleSection as ConsoleSection
from hub.config.sections import DispatcherSection as DispatcherSection
from hub.config.sections import HubSection as HubSection
from hub.config.sections import ManagerSection as ManagerSection
from hub.config.sections import RemindersSection as RemindersSection
from hub.config.sections import RepliesSection as RepliesSection
from hub.config.sections import StageContactSection as StageContactSection
from hub.config.sections import StagesSection as StagesSection
from hub.config.sections import StorageSection as StorageSection
from hub.kernel.errors import ConfigError as ConfigError
from hub.kernel.http import split_listen as split_listen
