"""User-facing texts in Russian and English (``hub.language``, or a manager's own)."""

from __future__ import annotations

from typing import Any

TEXTS: dict[str, dict[str, str]] = {
    "taken": {"ru": "Взято в работу: {manager}", "en": "Taken by {manager}"},
    "already_taken": {
        "ru": "Уже взято в работу: {manager}",
        "en": "Already taken by {manager}",
    },
    "offered_to_you": {
        "ru": "📨 Новое обращение, возьмёте? {client}",
        "en": "📨 A new request, will you take it? {client}",
    },
    "button_accept": {"ru": "✋ Беру", "en": "✋ I'll take it"},
    # Response deadlines (SLA)
    "sla_first_response": {"ru": "первый ответ", "en": "first response"},
    "sla_next_response": {"ru": "ответ клиенту", "en": "next response"},
    "sla_resolution": {"ru": "решение", "en": "resolution"},
    "sla_soon": {"ru": "⏰ Скоро срок: {kind} до {due}", "en": "⏰ Deadline near: {kind} by {due}"},
    "sla_missed": {
        "ru": "❗ Срок пропущен: {kind} (до {due}, правило «{policy}»)",
        "en": "❗ Deadline missed: {kind} (due {due}, policy “{policy}”)",
    },
    "sla_reassigned": {
        "ru": "↪️ Передано: {manager} (срок пропущен)",
        "en": "↪️ Reassigned to {manager} (deadline missed)",
    },
    "sla_nobody": {
        "ru": "Срок пропущен, но передать некому: все заняты или не на месте",
        "en": "Deadline missed, but nobody is available to take it over",
    },
    "resolved": {"ru": "Обращение закрыто: {manager}", "en": "Resolved by {manager}"},
    "reopened": {"ru": "Обращение снова открыто: {manager}", "en": "Reopened by {manager}"},
    # Waiting on the client (/wait): the resolution clock stops until they write
    "waiting_set": {
        "ru": "⏸ Ждём ответа клиента, срок решения остановлен: {manager}",
        "en": "⏸ Waiting on the client, the resolution clock stopped: {manager}",
    },
    "already_waiting": {
        "ru": "Обращение уже ждёт ответа клиента",
        "en": "The request is already waiting on the client",
    },
    "waiting_resumed": {
        "ru": "▶️ Клиент ответил: обращение снова открыто, срок решения идёт",
        "en": "▶️ The client wrote: the request is open again, its resolution clock runs",
    },
    "waiting_closed": {
        "ru": "Обращение закрыто: клиент не отвечал {days} дн.",
        "en": "Resolved: the client has not answered for {days} days",
    },
    "waiting_closed_note": {
        "ru": "Мы не получили от вас ответа и закрыли обращение. Если вопрос ещё актуален, "
        "просто напишите нам — мы продолжим.",
        "en": "We have not heard back from you, so we have closed this request. If you "
        "still need help, just write to us and we will pick it up again.",
    },
    "transferred": {
        "ru": "Передано: {target} (передал {manager})",
        "en": "Transferred to {target} by {manager}",
    },
    "tagged": {"ru": "Теги: {tags}", "en": "Tags: {tags}"},
    "stage": {"ru": "Стадия: {stage} ({manager})", "en": "Stage: {stage} ({manager})"},
    "remind_set": {
        "ru": "Напоминание на {when}: {text}",
        "en": "Reminder set for {when}: {text}",
    },
    "reminder": {"ru": "⏰ Напоминание: {text}", "en": "⏰ Reminder: {text}"},
    "reminder_follow_up": {
        "ru": "⏰ Клиент не ответил на ваше сообщение: напомните о себе",
        "en": "⏰ The client has not answered your message: follow up",
    },
    "reminder_stage": {
        "ru": "⏰ Пора снова связаться с клиентом (стадия {stage})",
        "en": "⏰ Time to contact the client again (stage {stage})",
    },
    "reminder_done": {
        "ru": "Напоминание выполнено: {text} ({manager})",
        "en": "Reminder done: {text} ({manager})",
    },
    "reminder_snoozed": {
        "ru": "Напоминание отложено до {when}: {text} ({manager})",
        "en": "Reminder snoozed until {when}: {text} ({manager})",
    },
    "reminder_not_yours": {
        "ru": "Это напоминание другого менеджера: его кнопки только для него",
        "en": "This reminder is another manager's: only they can use its buttons",
    },
    "reminder_settled": {
        "ru": "С этим напоминанием уже разобрались",
        "en": "This reminder has been dealt with already",
    },
    "button_done": {"ru": "Готово", "en": "Done"},
    "button_snooze_hour": {"ru": "Через 1 ч", "en": "Snooze 1 h"},
    "button_snooze_day": {"ru": "Через 1 день", "en": "Snooze 1 day"},
    "no_open": {"ru": "Нет открытых обращений", "en": "No open requests"},
    "not_yours": {
        "ru": "Это клиент другой команды: действуют его менеджер или руководитель",
        "en": "This client belongs to another team: their manager or a supervisor acts",
    },
    "unknown_manager": {
        "ru": "Менеджер «{name}» не найден",
        "en": "No manager named “{name}”",
    },
    # /remind: when a manager means (hub/kernel/when.py)
    "when_unknown": {
        "ru": (
            "Не понял время: «{text}». Сначала время, потом текст напоминания, например: "
            "через 2 часа, через 30 минут, завтра в 10, завтра в 10:30, в понедельник утром, "
            "послезавтра, 25 декабря, 25.12 в 15:00, 2h"
        ),
        "en": (
            "Cannot read the time “{text}”. The time comes first, then the reminder's text, "
            "e.g.: in 2 hours, in 30 minutes, tomorrow at 10am, Monday 9:00, next Monday, "
            "in 3 days, 25.12 15:00, 2h"
        ),
    },
    "when_past": {
        "ru": "Это время уже прошло: {when}. Например: завтра в 10, через 2 часа",
        "en": "That time has already passed: {when}. E.g.: tomorrow at 10am, in 2 hours",
    },
    "when_day_start": {
        "ru": "{when} (начало рабочего дня)",
        "en": "{when} (start of the working day)",
    },
    "unknown_action": {"ru": "Неизвестная команда: {action}", "en": "Unknown command: {action}"},
    "need_argument": {"ru": "Укажите, что именно: {usage}", "en": "Say what exactly: {usage}"},
    "bad_stage": {
        "ru": "Нет такой стадии: {stage}. Стадии: {stages}",
        "en": "No such stage: {stage}. Stages: {stages}",
    },
    "delivery_failed": {
        "ru": "Не доставлено ({channel}): {reason}",
        "en": "Not delivered ({channel}): {reason}",
    },
    # The staff chat (channels/telegram/staff/, render.py)
    "card_stage": {"ru": "Стадия", "en": "Stage"},
    "card_owner": {"ru": "Владелец", "en": "Owner"},
    "card_assignee": {"ru": "Ответственный", "en": "Assignee"},
    "card_due": {"ru": "ответить до", "en": "answer by"},
    "card_open": {"ru": "Открытых обращений", "en": "Open requests"},
    "card_tags": {"ru": "Теги", "en": "Tags"},
    "card_source": {"ru": "Источник", "en": "Source"},
    "card_recent": {"ru": "Последние контакты", "en": "Last contacts"},
    "button_take": {"ru": "Взять", "en": "Take"},
    "button_resolve": {"ru": "Закрыть", "en": "Resolve"},
    "button_wait": {"ru": "⏸ Ждём", "en": "⏸ Wait"},
    "button_reopen": {"ru": "Открыть снова", "en": "Reopen"},
    "button_card": {"ru": "Карточка", "en": "Card"},
    "button_stage_up": {"ru": "⬆️ Стадия", "en": "⬆️ Stage"},
    "button_stage_down": {"ru": "⬇️ Стадия", "en": "⬇️ Stage"},
    "open_topic": {"ru": "Открыть тему", "en": "Open the topic"},
    "assigned_to_you": {"ru": "🆕 Вам назначено: {client}", "en": "🆕 Assigned to you: {client}"},
    "assigned_to": {"ru": "Назначено: {manager}", "en": "Assigned to {manager}"},
    "staff_notice": {"ru": "Клиент: {client}", "en": "Client: {client}"},
    "inbox_title": {
        "ru": "Ваши открытые обращения ({count}):",
        "en": "Your open requests ({count}):",
    },
    "inbox_empty": {
        "ru": "На вас нет открытых обращений",
        "en": "No open requests are assigned to you",
    },
    "inbox_more": {"ru": "…и ещё {count}", "en": "…and {count} more"},
    "waiting": {"ru": "ждёт {age}", "en": "waiting {age}"},
    "find_title": {"ru": "Найдено ({count}):", "en": "Found ({count}):"},
    "find_none": {"ru": "Ничего не найдено: «{query}»", "en": "Nothing found for “{query}”"},
    "no_topic": {"ru": "нет темы", "en": "no topic"},
    "channel_not_configured": {
        "ru": "этому клиенту можно ответить только через {channel}, а отправка через "
        "{channel} в хабе не настроена. Ответ записан в карточку клиента как неотправленный.",
        "en": "this client can only be answered over {channel}, and the hub is not set up to "
        "send over {channel}. The answer is logged on the client as not sent.",
    },
    "cannot_answer": {
        "ru": "Не отправлено клиенту: {reason}",
        "en": "Not sent to the client: {reason}",
    },
    "file_failed": {
        "ru": "Не удалось получить файл, ничего не отправлено: {reason}",
        "en": "Could not fetch the file, nothing was sent: {reason}",
    },
    "file_too_big": {
        "ru": "📎 {name} ({size}) — слишком большой файл для Telegram",
        "en": "📎 {name} ({size}) — too big for Telegram",
    },
    "topic_help": {
        "ru": (
            "Сообщение в теме уходит клиенту; «!» или /note — заметка для своих.\n"
            "/take, /resolve, /wait (ждём клиента), /reopen, /transfer ИМЯ, /tag СЛОВА, "
            "/stage СТАДИЯ, /remind 2h ТЕКСТ, /card, /t ШАБЛОН (/t — список шаблонов); "
            "руководителям: /block, /unblock"
        ),
        "en": (
            "A message in the topic goes to the client; “!” or /note makes an internal note.\n"
            "/take, /resolve, /wait (on the client), /reopen, /transfer NAME, /tag WORDS, "
            "/stage NAME, /remind 2h TEXT, /card, /t TEMPLATE (/t lists the templates); "
            "supervisors: /block, /unblock"
        ),
    },
    "private_help": {
        "ru": "/inbox — ваши открытые обращения (кнопкой — сделать клиента текущим)\n"
        "/find ТЕКСТ — найти клиента\n"
        "/away — не давать мне новых обращений\n/back — я снова на месте\n"
        "/report week — отчёт за неделю (month — за месяц)\n"
        "/web — ссылка для входа в веб-консоль\n\n"
        "Ответить клиенту: ответьте (reply) на сообщение с его словами; «!» в начале — "
        "заметка для своих. Или выберите текущего клиента: /c ID (номер с карточки) или "
        "кнопкой в /inbox — тогда просто пишите, всё уйдёт ему; /c 0 — без текущего. "
        "Когда сообщений много, они приходят сводкой с номерами: /r НОМЕР ТЕКСТ.\n"
        "Для клиента из ответа или текущего: /t ШАБЛОН (/t — список), /take, /resolve, "
        "/wait, /transfer ИМЯ, /remind 2h ТЕКСТ, /card, /note ТЕКСТ; "
        "руководителям: /block, /unblock",
        "en": "/inbox — your open requests (a button makes the client current)\n"
        "/find TEXT — find a client\n"
        "/away — give me no new requests\n/back — I am back\n"
        "/report week — the week's report (month: the last 30 days)\n"
        "/web — a sign-in link to the web console\n\n"
        "To answer a client, reply to the message with their words; “!” first makes an "
        "internal note. Or choose a current client: /c ID (the number on the card) or a "
        "button in /inbox, then just write and it goes to them; /c 0: no current client. "
        "When many messages come at once they come as a numbered digest: /r NUMBER TEXT.\n"
        "For the client replied to, or the current one: /t TEMPLATE (/t lists them), "
        "/take, /resolve, /wait, /transfer NAME, /remind 2h TEXT, /card, /note TEXT; "
        "supervisors: /block, /unblock",
    },
    # Answering from the private chat (channels/telegram/staff/private.py)
    "private_facts": {
        "ru": "{channel} · стадия: {stage} · #{id}",
        "en": "{channel} · stage: {stage} · #{id}",
    },
    "sent_to": {"ru": "✓ Отправлено: {client}", "en": "✓ Sent to {client}"},
    "sent_to_current": {
        "ru": "✓ Отправлено текущему клиенту: {client}",
        "en": "✓ Sent to {client}, your current client",
    },
    "noted_on": {
        "ru": "📝 Заметка о клиенте {client} сохранена",
        "en": "📝 Note on {client} saved",
    },
    "noted_on_current": {
        "ru": "📝 Заметка о текущем клиенте {client} сохранена",
        "en": "📝 Note on {client}, your current client, saved",
    },
    "not_about_client": {
        "ru": "Это сообщение не о клиенте. Ответьте на сообщение с его словами или выберите "
        "текущего клиента: /c ID",
        "en": "This message is about no client. Reply to a message with the client's words, "
        "or choose a current client: /c ID",
    },
    "digest_title": {
        "ru": "📥 Новых сообщений клиентов: {count}",
        "en": "📥 New messages from clients: {count}",
    },
    "digest_hint": {
        "ru": "Ответить: /r НОМЕР ТЕКСТ, или кнопкой с номером сделайте клиента текущим",
        "en": "To answer: /r NUMBER TEXT, or press a number to make that client current",
    },
    "digest_reply": {
        "ru": "Здесь несколько клиентов: ответьте /r НОМЕР ТЕКСТ (номер из списка)",
        "en": "This lists several clients: answer with /r NUMBER TEXT (the number in the list)",
    },
    "no_entry": {
        "ru": "Нет записи №{number} в последней сводке. Ответьте /r НОМЕР ТЕКСТ на саму сводку",
        "en": "The latest digest has no entry {number}. Reply /r NUMBER TEXT to the digest",
    },
    "no_current": {
        "ru": "Нет текущего клиента. Ответьте (reply) на сообщение клиента или выберите его: "
        "/c ID (номер с карточки) или кнопкой в /inbox",
        "en": "No current client. Reply to a client's message, or choose one: /c ID (the "
        "number on the card) or a button in /inbox",
    },
    "current_set": {
        "ru": "Текущий клиент: {client} (#{id}). Что вы напишете здесь, уйдёт ему; /c 0 — "
        "без текущего",
        "en": "Current client: {client} (#{id}). What you write here goes to them; /c 0: none",
    },
    "current_is": {
        "ru": "Текущий клиент: #{id}. /c ID — другой, /c 0 — без текущего",
        "en": "Current client: #{id}. /c ID for another, /c 0 for none",
    },
    "current_cleared": {
        "ru": "Текущего клиента нет: отвечайте на сообщения клиентов",
        "en": "No current client now: reply to clients' messages",
    },
    "no_client": {"ru": "Нет клиента #{id}", "en": "No client #{id}"},
    # Blocked clients and floods (hub/desk/desk.py, hub/ingest/flood.py)
    "blocked": {
        "ru": "🚫 Клиент заблокирован ({manager}): его сообщения сохраняются, но менеджерам "
        "не приходят, сроки по ним не идут; /unblock — снять блокировку",
        "en": "🚫 Client blocked by {manager}: their messages are logged but reach no "
        "manager and start no deadline; /unblock lifts it",
    },
    "unblocked": {
        "ru": "✅ Клиент разблокирован ({manager}): сообщения снова приходят менеджерам",
        "en": "✅ Client unblocked by {manager}: their messages reach the managers again",
    },
    "already_blocked": {"ru": "Клиент уже заблокирован", "en": "The client is already blocked"},
    "not_blocked": {"ru": "Клиент не заблокирован", "en": "The client is not blocked"},
    "block_not_allowed": {
        "ru": "Блокировать и разблокировать клиентов могут только руководители и администраторы",
        "en": "Only supervisors and admins can block and unblock clients",
    },
    "card_blocked": {"ru": "Заблокирован", "en": "Blocked"},
    "flood_notice": {
        "ru": "⚠️ Больше {limit} сообщений от клиента за минуту: остальные сообщения этой "
        "минуты сохраняются в истории клиента, но сюда по одному не приходят (смотрите /card)",
        "en": "⚠️ Over {limit} messages from this client within a minute: the rest of this "
        "minute's are logged on the client but not shown here one by one (see /card)",
    },
    # Mail whose sender could not be read (channels/email, hub/ingest)
    "unknown_sender": {
        "ru": "неизвестный отправитель, {mailbox}",
        "en": "unknown sender, {mailbox}",
    },
    "card_no_address": {
        "ru": "⚠️ Адрес отправителя не удалось прочитать: ответить этому клиенту нельзя. "
        "Когда станет ясно, кто писал, объедините его с нужным клиентом: "
        'POST /api/clients/НУЖНЫЙ/merge {{"other": {id}}}',
        "en": "⚠️ The sender's address could not be read: this client cannot be answered. "
        "Once you know who wrote, merge it into the right client: "
        'POST /api/clients/RIGHT/merge {{"other": {id}}}',
    },
    "mirror_sender_unknown": {
        "ru": "⚠️ В письме нет читаемого адреса отправителя: ответить на него нельзя. "
        "Оно записано на отдельного клиента — объедините его с нужным (см. /card)",
        "en": "⚠️ This mail has no readable sender address: it cannot be answered. "
        "It is logged on a client of its own; merge that into the right client (see /card)",
    },
    "mirror_sender_fallback": {
        "ru": "⚠️ Поле From не удалось прочитать: отправитель взят из {source}",
        "en": "⚠️ The From field could not be read: the sender is taken from {source}",
    },
    "nothing_to_send": {
        "ru": "Нечего отправить клиенту: напишите текст или приложите файл",
        "en": "Nothing to send to the client: write text or attach a file",
    },
    "button_transfer": {"ru": "Передать", "en": "Transfer"},
    "button_remind": {"ru": "Напомнить", "en": "Remind"},
    "transfer_to": {"ru": "Кому передать клиента {client}?", "en": "Transfer {client} to:"},
    "nobody_to_transfer": {"ru": "Передать некому", "en": "There is nobody to transfer to"},
    "remind_about": {"ru": "Когда напомнить о клиенте {client}?", "en": "Remind me of {client}:"},
    "button_remind_1h": {"ru": "Через час", "en": "In an hour"},
    "button_remind_3h": {"ru": "Через 3 часа", "en": "In 3 hours"},
    "button_remind_tomorrow": {"ru": "Завтра", "en": "Tomorrow"},
    "answered_by": {"ru": "↩️ Ответ {manager}:", "en": "↩️ {manager} answered:"},
    "noted_by": {"ru": "📝 Заметка {manager}:", "en": "📝 Note by {manager}:"},
    # Canned answers ([[desk.templates]], /t)
    "template_unknown": {
        "ru": "Нет шаблона «{name}». Шаблоны: {names}",
        "en": "No template “{name}”. Templates: {names}",
    },
    "templates_none": {
        "ru": "Шаблонов нет: их задают в конфигурации, [[desk.templates]]",
        "en": "No templates: they are set in the config, [[desk.templates]]",
    },
    "templates_title": {
        "ru": "Шаблоны ответа для клиента {client}: нажмите, чтобы отправить",
        "en": "Canned answers for {client}: press one to send it",
    },
    "away_on": {
        "ru": "Вы отошли: новых обращений не будет до /back",
        "en": "You are away: no new requests until /back",
    },
    "web_link": {
        "ru": "Ссылка для входа в консоль (действует 15 минут, один раз; никому её не "
        "пересылайте):\n{url}",
        "en": "Your sign-in link to the console (works once, for 15 minutes; forward it "
        "to nobody):\n{url}",
    },
    "web_off": {
        "ru": "Веб-консоль не включена (console.listen в настройках)",
        "en": "The web console is not on (console.listen in the config)",
    },
    "away_off": {
        "ru": "С возвращением! Ожидающие обращения скоро придут",
        "en": "Welcome back! Waiting requests are on their way",
    },
    # Reports (hub/reports/, /report in the private chat)
    "report_title": {"ru": "📊 Отчёт за {first}–{last}", "en": "📊 Report for {first}–{last}"},
    "report_first_response": {
        "ru": "Обращений: {requests}, с ответом: {answered}; первый ответ: медиана {median}, "
        "p90 {p90}",
        "en": "Requests: {requests}, answered: {answered}; first response: median {median}, "
        "p90 {p90}",
    },
    "report_resolution": {
        "ru": "Решено: {resolved}; время решения: медиана {median}, p90 {p90}",
        "en": "Resolved: {resolved}; resolution time: median {median}, p90 {p90}",
    },
    "report_deadlines": {
        "ru": "Сроки: пропущено {missed} из {due}",
        "en": "Deadlines: {missed} of {due} missed",
    },
    "report_open": {
        "ru": "Открыто сейчас: {open}, просрочено: {overdue}, без ответственного: {unassigned}",
        "en": "Open now: {open}, overdue: {overdue}, unassigned: {unassigned}",
    },
    "report_inbound": {
        "ru": "Входящих сообщений: {total} ({channels})",
        "en": "Inbound messages: {total} ({channels})",
    },
    "report_stages": {"ru": "Смен стадий: {moves}", "en": "Stage moves: {moves}"},
    "report_usage": {
        "ru": "Отчёт: /report week (7 дней) или /report month (30 дней)",
        "en": "Report: /report week (7 days) or /report month (30 days)",
    },
    "report_unavailable": {
        "ru": "Отчёты здесь недоступны",
        "en": "Reports are not available here",
    },
    "chart_first_response": {
        "ru": "Первый ответ по менеджерам",
        "en": "First response by manager",
    },
    "chart_resolution": {"ru": "Время решения по менеджерам", "en": "Resolution by manager"},
    "chart_volume_hour": {"ru": "Входящие по часам", "en": "Inbound by hour"},
    "chart_volume_channel": {"ru": "Сообщения по каналам", "en": "Messages by channel"},
    "chart_load": {"ru": "Открытые обращения", "en": "Open requests"},
    "chart_breaches": {"ru": "Сроки (SLA)", "en": "Deadlines (SLA)"},
    "chart_stages": {"ru": "Смены стадий", "en": "Stage moves"},
    "chart_campaigns": {"ru": "Кампании", "en": "Campaigns"},
    "chart_inbound": {"ru": "входящие", "en": "inbound"},
    "chart_outbound": {"ru": "исходящие", "en": "outbound"},
    "chart_open": {"ru": "открыто", "en": "open"},
    "chart_overdue": {"ru": "просрочено", "en": "overdue"},
    "chart_due": {"ru": "всего", "en": "due"},
    "chart_missed": {"ru": "пропущено", "en": "missed"},
    "chart_sent": {"ru": "отправлено", "en": "sent"},
    "chart_replied": {"ru": "ответили", "en": "replied"},
    "chart_median": {"ru": "медиана", "en": "median"},
    "chart_nobody": {"ru": "никто", "en": "nobody"},
    "chart_minutes": {"ru": "минуты", "en": "minutes"},
    "chart_hours": {"ru": "часы", "en": "hours"},
    "chart_no_data": {"ru": "Нет данных", "en": "No data"},
    # Campaigns and call lists (hub/campaigns/)
    "campaign_stop_hint": {"ru": "Отписаться от рассылки: /stop", "en": "Unsubscribe: /stop"},
    "campaign_unsubscribe": {
        "ru": "Отписаться от рассылки: {url}",
        "en": "Unsubscribe from these messages: {url}",
    },
    "campaign_opted_out": {
        "ru": "Клиент отписался от рассылок (ссылка из кампании #{campaign})",
        "en": "The client unsubscribed (the link of campaign #{campaign})",
    },
    "campaign_unsubscribed_page": {
        "ru": "Вы отписаны от рассылок. Спасибо!",
        "en": "You are unsubscribed. Thank you!",
    },
    "campaign_unsubscribe_page": {
        "ru": "Отписаться от рассылок?",
        "en": "Unsubscribe from these messages?",
    },
    "campaign_unsubscribe_button": {"ru": "Отписаться", "en": "Unsubscribe"},
    "campaign_bad_link": {
        "ru": "Ссылка недействительна",
        "en": "This link is not valid",
    },
    "campaign_marketers_only": {
        "ru": "Кампаниями управляют маркетологи и администраторы",
        "en": "Campaigns are run by marketers and administrators",
    },
    "campaign_none": {"ru": "Кампаний пока нет", "en": "No campaigns yet"},
    "campaign_list_title": {"ru": "📣 Кампании:", "en": "📣 Campaigns:"},
    "campaign_status_draft": {"ru": "черновик", "en": "draft"},
    "campaign_status_running": {"ru": "идёт", "en": "running"},
    "campaign_status_paused": {"ru": "на паузе", "en": "paused"},
    "campaign_status_done": {"ru": "завершена", "en": "done"},
    "campaign_variant_stats": {
        "ru": "Вариант {variant}: адресатов {targeted}, отправлено {sent}, доставлено "
        "{delivered}, ошибок {failed}, ответили {replied}, отписались {opted_out}, "
        "пропущено {skipped}",
        "en": "Variant {variant}: targeted {targeted}, sent {sent}, delivered {delivered}, "
        "failed {failed}, replied {replied}, opted out {opted_out}, skipped {skipped}",
    },
    "call_task": {
        "ru": "📞 Звонок по кампании «{campaign}»: {client}, {phone}",
        "en": "📞 A call for “{campaign}”: {client}, {phone}",
    },
    "call_no_phone": {"ru": "телефон неизвестен", "en": "no phone number"},
    "call_task_given": {
        "ru": "Задача на звонок по кампании «{campaign}»: {manager}",
        "en": "Call task of “{campaign}” given to {manager}",
    },
    "call_task_gone": {"ru": "Этой задачи больше нет", "en": "This call task is gone"},
    "call_task_not_yours": {
        "ru": "Это задача другого менеджера",
        "en": "This call task is another manager's",
    },
    "call_outcome_logged": {
        "ru": "Итог звонка: {outcome} ({manager})",
        "en": "Call outcome: {outcome} ({manager})",
    },
    "call_outcome_reached": {"ru": "дозвонился", "en": "reached"},
    "call_outcome_interested": {"ru": "интересно", "en": "interested"},
    "call_outcome_not_interested": {"ru": "не интересно", "en": "not interested"},
    "call_outcome_call_back": {"ru": "перезвонить позже", "en": "call back later"},
    "call_outcome_wrong_number": {"ru": "неверный номер", "en": "wrong number"},
    "call_outcome_open": {"ru": "без итога", "en": "open"},
    "call_back_set": {"ru": "напомню {when}", "en": "reminder at {when}"},
    "call_back_reminder": {
        "ru": "Перезвонить клиенту (кампания «{campaign}»)",
        "en": "Call the client back (campaign “{campaign}”)",
    },
    "button_call_reached": {"ru": "✅ Дозвонился", "en": "✅ Reached"},
    "button_call_interested": {"ru": "👍 Интересно", "en": "👍 Interested"},
    "button_call_not_interested": {"ru": "👎 Не интересно", "en": "👎 Not interested"},
    "button_call_call_back": {"ru": "🔁 Перезвонить", "en": "🔁 Call back later"},
    "button_call_wrong_number": {"ru": "❌ Неверный номер", "en": "❌ Wrong number"},
    # Web forms (channels/webform): the page, its errors, the confirmation email
    "form_send": {"ru": "Отправить", "en": "Send"},
    "form_required": {"ru": "Заполните это поле", "en": "Please fill in this field"},
    "form_too_long": {
        "ru": "Слишком длинно: не больше {limit} символов",
        "en": "Too long: {limit} characters at most",
    },
    "form_bad_email": {
        "ru": "Это не похоже на адрес эл. почты",
        "en": "This does not look like an email address",
    },
    "form_bad_phone": {
        "ru": "Это не похоже на номер телефона",
        "en": "This does not look like a phone number",
    },
    "form_need_contact": {
        "ru": "Оставьте эл. почту или телефон, чтобы мы могли ответить",
        "en": "Leave an email or a phone number so that we can answer",
    },
    "form_file_too_big": {
        "ru": "Файл слишком большой: не больше {limit}",
        "en": "The file is too big: {limit} at most",
    },
    "form_file_type": {
        "ru": "Такой тип файла не принимается ({accept})",
        "en": "This type of file is not accepted ({accept})",
    },
    "form_not_a_file": {"ru": "Здесь ожидается файл", "en": "A file is expected here"},
    "form_unknown_field": {"ru": "Неизвестное поле", "en": "Unknown field"},
    "form_too_fast": {
        "ru": "Форма отправлена слишком быстро. Проверьте её и отправьте ещё раз",
        "en": "The form was sent too quickly. Please check it and send it again",
    },
    "form_spam": {
        "ru": "Форма не принята: заполнено поле, которое должно оставаться пустым",
        "en": "The form was not accepted: a field meant to stay empty was filled in",
    },
    "form_rate_limited": {
        "ru": "Слишком много отправок с вашего адреса. Попробуйте через минуту",
        "en": "Too many submissions from your address. Please try again in a minute",
    },
    "form_too_large": {
        "ru": "Слишком большой объём данных: не больше {limit}",
        "en": "Too much data: {limit} at most",
    },
    "form_bad_body": {
        "ru": "Не удалось прочитать отправленные данные",
        "en": "The submitted data could not be read",
    },
    "form_too_many_fields": {
        "ru": "Слишком много полей: не больше {limit}",
        "en": "Too many fields: {limit} at most",
    },
    "form_bad_part": {
        "ru": "Не удалось прочитать часть формы: у неё неверный заголовок",
        "en": "A part of the form could not be read: its header is malformed",
    },
    "form_nested": {
        "ru": "Значение поля — текст, число или да/нет, без вложенных объектов и списков",
        "en": "A field's value is text, a number or true/false, never a nested object or list",
    },
    "form_origin_refused": {
        "ru": "Этой форме нельзя отправлять данные с сайта {origin}",
        "en": "This form does not take submissions from {origin}",
    },
    "form_unavailable": {
        "ru": "Сейчас не удалось сохранить заявку. Попробуйте ещё раз чуть позже",
        "en": "The request could not be saved just now. Please try again shortly",
    },
    "form_failed": {
        "ru": "Не удалось отправить форму. Попробуйте ещё раз",
        "en": "The form could not be sent. Please try again",
    },
    "form_unknown": {"ru": "Нет такой формы", "en": "No such form"},
    "form_errors_title": {"ru": "Проверьте поля формы", "en": "Please check the form"},
    "form_thank_you": {
        "ru": "Спасибо! Заявка принята, мы скоро ответим.",
        "en": "Thank you! Your request is received; we will answer soon.",
    },
    "form_confirm_subject": {
        "ru": "Мы получили вашу заявку: {title}",
        "en": "We have received your request: {title}",
    },
    "form_confirm_body": {
        "ru": "Здравствуйте{name}!\n\nМы получили вашу заявку и скоро ответим.\n\n{summary}",
        "en": "Hello{name},\n\nWe have received your request and will answer soon.\n\n{summary}",
    },
    # Satisfaction ([csat]): to the client on resolve, their rating, the staff's alert
    "csat_note": {
        "ru": "Ваше обращение решено. Спасибо, что написали нам!",
        "en": "Your request has been resolved. Thank you for contacting us!",
    },
    "csat_ask": {
        "ru": "Оцените, пожалуйста, как мы помогли: от 1 (плохо) до 5 (отлично).",
        "en": "How did we do? Please rate us from 1 (poor) to 5 (excellent).",
    },
    "csat_ask_links": {
        "ru": "{links}\n\nМожно ответить на это письмо: ответ станет комментарием к оценке.",
        "en": "{links}\n\nYou may reply to this email: your reply becomes your rating's comment.",
    },
    "csat_subject": {"ru": "Ваше обращение решено", "en": "Your request is resolved"},
    "csat_thanks": {
        "ru": "Спасибо за оценку {score} из 5! Если хотите, напишите пару слов в ответ.",
        "en": "Thank you for rating us {score} of 5! Feel free to write us a few words.",
    },
    "csat_not_yours": {
        "ru": "Эту оценку поставить нельзя",
        "en": "This rating cannot be given here",
    },
    "csat_page_title": {"ru": "Ваша оценка: {score} из 5", "en": "Your rating: {score} of 5"},
    "csat_page_button": {"ru": "Отправить оценку", "en": "Send my rating"},
    "csat_page_done": {
        "ru": "Спасибо! Оценка {score} из 5 сохранена.",
        "en": "Thank you! Your rating {score} of 5 is saved.",
    },
    "csat_bad_link": {"ru": "Ссылка недействительна", "en": "This link is not valid"},
    "csat_event": {"ru": "Оценка клиента: {score} из 5", "en": "The client rated {score} of 5"},
    "csat_event_changed": {
        "ru": "Клиент изменил оценку: {old} → {score} из 5",
        "en": "The client changed their rating: {old} → {score} of 5",
    },
    "csat_alert": {
        "ru": "⚠️ Низкая оценка {score} из 5: {client} (#{id}), закрыто: {manager}. /c {id}",
        "en": "⚠️ Low rating {score} of 5: {client} (#{id}), resolved by {manager}. /c {id}",
    },
    "csat_comment": {
        "ru": "💬 Комментарий к оценке {score} из 5: {comment}",
        "en": "💬 A comment on the rating {score} of 5: {comment}",
    },
    "report_satisfaction": {
        "ru": "Оценки клиентов: {count}, средняя {average}",
        "en": "Client ratings: {count}, average {average}",
    },
    "chart_satisfaction": {"ru": "Оценки клиентов", "en": "Client ratings"},
    "chart_average": {"ru": "средняя", "en": "average"},
}


def text(key: str, language: str | None, **values: Any) -> str:
    variants = TEXTS[key]
    return variants.get(language or "ru", variants["en"]).format(**values)


def progress_bar(done: int, total: int, width: int = 30) -> str:
    """``[##########----------]  50% 5000/10000``"""
    share = done / total if total else 1.0
    filled = round(share * width)
    return f"[{'#' * filled}{'-' * (width - filled)}] {share * 100:3.0f}% {done}/{total}"
