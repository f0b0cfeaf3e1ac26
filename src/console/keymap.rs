//! The one table of keys. `update` resolves keys through it and the help overlay and the hint
//! bar are rendered from it, so a key cannot work without being documented (or the reverse).

use crate::console::state::{AppState, ConfirmAction, Dialog, Pane};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use tui_logger::TuiWidgetEvent;

/// Where a binding applies. Dialogs and the help overlay take all keys while they are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Global,
    Migrations,
    Progress,
    Rejects,
    Log,
    Review,
    Verify,
    Confirm,
    /// The run-all confirmation: yes, no, or `b` (back up the target first, then run).
    ConfirmRunAll,
    TextInput,
    /// The fix dialog of the rejects pane: a value for one field, tab chooses the field.
    FixField,
    Details,
    Help,
    /// The import pane (`i`): a file, its preview and the suggested mapping.
    Import,
    /// The import pane's input line (a table, a target column, transforms, a step name).
    ImportInput,
    /// The pre-flight pane (`a`): the last assess of the pending steps.
    Assess,
}

impl Context {
    pub fn of_pane(p: Pane) -> Context {
        match p {
            Pane::Migrations => Context::Migrations,
            Pane::Progress => Context::Progress,
            Pane::Rejects => Context::Rejects,
            Pane::Log => Context::Log,
            Pane::Review => Context::Review,
            Pane::Verify => Context::Verify,
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Context::Global => "Everywhere",
            Context::Migrations => "Migrations",
            Context::Progress => "Progress",
            Context::Rejects => "Rejects",
            Context::Log => "Log",
            Context::Review => "Review",
            Context::Verify => "Verify",
            Context::Confirm => "Confirmation",
            Context::ConfirmRunAll => "Run all: confirmation",
            Context::TextInput => "Text input",
            Context::FixField => "Fix a field",
            Context::Details => "Details",
            Context::Help => "Help",
            Context::Import => "Import",
            Context::ImportInput => "Import input",
            Context::Assess => "Pre-flight",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    ForceQuit,
    ToggleHelp,
    NextPane,
    PrevPane,
    Focus(Pane),
    Up,
    Down,
    Top,
    Bottom,
    PageUp,
    PageDown,
    Details,
    Refresh,
    RunNext,
    RunAll,
    PauseResume,
    Abort,
    DryRun,
    Rollback,
    Filter,
    ClearFilter,
    EditReject,
    RetryReject,
    RetryStep,
    Export,
    TakeA,
    TakeB,
    DecideValue,
    Split,
    ReviewNote,
    UndoDecision,
    ToggleShowAll,
    Verify,
    /// `i`: open the import pane.
    OpenImport,
    /// Import pane: change the selected row's target column.
    ImportTarget,
    /// Import pane: change the selected row's transforms.
    ImportTransforms,
    /// Import pane: save the mapping as a data step.
    ImportSave,
    /// `F`: open the pre-flight pane (assesses when it has no report yet).
    OpenAssess,
    /// Pre-flight pane: assess again.
    Reassess,
    /// A global write key a pane refuses, because a key of its own is one shift away (`A`
    /// "run all" in the review pane, beside `a` "take A").
    NotHere,
    Log(TuiWidgetEvent),
    Confirm,
    /// The run-all confirmation's `b`: back up the target, then run.
    BackupThenRun,
    Cancel,
    Submit,
    Backspace,
    Close,
}

#[derive(Debug, Clone, Copy)]
pub struct Binding {
    pub context: Context,
    pub code: KeyCode,
    pub modifiers: KeyModifiers,
    pub action: Action,
    pub help: &'static str,
}

const fn key(context: Context, code: KeyCode, action: Action, help: &'static str) -> Binding {
    Binding {
        context,
        code,
        modifiers: KeyModifiers::NONE,
        action,
        help,
    }
}

const fn ctrl(context: Context, code: KeyCode, action: Action, help: &'static str) -> Binding {
    Binding {
        context,
        code,
        modifiers: KeyModifiers::CONTROL,
        action,
        help,
    }
}

use Action as A;
use Context as C;
use KeyCode::{BackTab, Backspace, Char, Down, End, Enter, Esc, Home, Left, PageDown, PageUp, Right, Tab, Up};

/// Every key of the console. Consecutive rows with the same context and action are one help
/// line ("j, ↓  select next").
pub const KEYMAP: &[Binding] = &[
    key(C::Global, Char('?'), A::ToggleHelp, "help"),
    key(C::Global, Char('q'), A::Quit, "quit"),
    ctrl(C::Global, Char('c'), A::ForceQuit, "quit now"),
    key(C::Global, Tab, A::NextPane, "next pane"),
    key(C::Global, BackTab, A::PrevPane, "previous pane"),
    key(C::Global, Char('1'), A::Focus(Pane::Migrations), "migrations pane"),
    key(C::Global, Char('2'), A::Focus(Pane::Progress), "progress pane"),
    key(C::Global, Char('3'), A::Focus(Pane::Rejects), "rejects pane"),
    key(C::Global, Char('4'), A::Focus(Pane::Log), "log pane"),
    key(C::Global, Char('5'), A::Focus(Pane::Review), "review pane"),
    key(C::Global, Char('6'), A::Focus(Pane::Verify), "verify pane"),
    key(C::Global, Char('n'), A::RunNext, "run next pending step"),
    // Shifted: a lower-case `a` takes side A in the review pane.
    key(C::Global, Char('A'), A::RunAll, "run all pending"),
    key(C::Global, Char('p'), A::PauseResume, "pause / resume"),
    key(C::Global, Char('x'), A::Abort, "abort (at batch end)"),
    // Read-only, so it works while another process holds the lock.
    key(C::Global, Char('V'), A::Verify, "verify the target"),
    ctrl(C::Global, Char('r'), A::Refresh, "refresh"),
    key(C::Global, Char('i'), A::OpenImport, "import a file"),
    // Read-only. `F` (pre-Flight): `a` takes side A in the review pane.
    key(C::Global, Char('F'), A::OpenAssess, "pre-flight (assess)"),
    key(C::Migrations, Char('j'), A::Down, "select next step"),
    key(C::Migrations, Down, A::Down, "select next step"),
    key(C::Migrations, Char('k'), A::Up, "select previous step"),
    key(C::Migrations, Up, A::Up, "select previous step"),
    key(C::Migrations, Char('g'), A::Top, "first step"),
    key(C::Migrations, Home, A::Top, "first step"),
    key(C::Migrations, Char('G'), A::Bottom, "last step"),
    key(C::Migrations, End, A::Bottom, "last step"),
    key(C::Migrations, Enter, A::Details, "step details"),
    key(C::Migrations, Char('d'), A::DryRun, "dry-run step"),
    key(C::Migrations, Char('u'), A::Rollback, "roll back step"),
    key(C::Progress, Enter, A::Details, "step details"),
    key(C::Rejects, Char('j'), A::Down, "select next row"),
    key(C::Rejects, Down, A::Down, "select next row"),
    key(C::Rejects, Char('k'), A::Up, "select previous row"),
    key(C::Rejects, Up, A::Up, "select previous row"),
    key(C::Rejects, PageDown, A::PageDown, "next page"),
    key(C::Rejects, PageUp, A::PageUp, "previous page"),
    key(C::Rejects, Char('g'), A::Top, "first row of all"),
    key(C::Rejects, Home, A::Top, "first row of all"),
    key(C::Rejects, Char('G'), A::Bottom, "last row of all"),
    key(C::Rejects, End, A::Bottom, "last row of all"),
    key(C::Rejects, Char('/'), A::Filter, "filter (any text)"),
    key(C::Rejects, Esc, A::ClearFilter, "clear filter"),
    key(C::Rejects, Enter, A::Details, "row details"),
    key(C::Rejects, Char('e'), A::EditReject, "fix a field"),
    key(C::Rejects, Char('r'), A::RetryReject, "retry row"),
    key(C::Rejects, Char('R'), A::RetryStep, "retry its whole step"),
    key(C::Rejects, Char('w'), A::Export, "write all matching to CSV"),
    key(C::Review, Char('j'), A::Down, "next discrepancy"),
    key(C::Review, Down, A::Down, "next discrepancy"),
    key(C::Review, Char('k'), A::Up, "previous discrepancy"),
    key(C::Review, Up, A::Up, "previous discrepancy"),
    key(C::Review, Char('g'), A::Top, "first discrepancy"),
    key(C::Review, Home, A::Top, "first discrepancy"),
    key(C::Review, Char('G'), A::Bottom, "last discrepancy"),
    key(C::Review, End, A::Bottom, "last discrepancy"),
    key(C::Review, Char('a'), A::TakeA, "take A"),
    key(C::Review, Char('b'), A::TakeB, "take B"),
    key(C::Review, Char('e'), A::DecideValue, "other value…"),
    key(C::Review, Char('s'), A::Split, "split (not the same)"),
    key(C::Review, Char('c'), A::ReviewNote, "note for next decision"),
    key(C::Review, Char('U'), A::UndoDecision, "undo the last decision"),
    key(C::Review, Char('A'), A::NotHere, "run all: not here"),
    key(C::Review, Char('v'), A::ToggleShowAll, "show all / open only"),
    key(C::Review, Enter, A::Details, "discrepancy details"),
    key(C::Verify, Char('j'), A::Down, "next check"),
    key(C::Verify, Down, A::Down, "next check"),
    key(C::Verify, Char('k'), A::Up, "previous check"),
    key(C::Verify, Up, A::Up, "previous check"),
    key(C::Verify, Char('g'), A::Top, "first check"),
    key(C::Verify, Home, A::Top, "first check"),
    key(C::Verify, Char('G'), A::Bottom, "last check"),
    key(C::Verify, End, A::Bottom, "last check"),
    key(C::Verify, Enter, A::Details, "check in full"),
    key(
        C::Log,
        Char('h'),
        A::Log(TuiWidgetEvent::HideKey),
        "show / hide targets",
    ),
    key(
        C::Log,
        Char('f'),
        A::Log(TuiWidgetEvent::FocusKey),
        "only the selected target",
    ),
    key(C::Log, Char('k'), A::Log(TuiWidgetEvent::UpKey), "previous target"),
    key(C::Log, Up, A::Log(TuiWidgetEvent::UpKey), "previous target"),
    key(C::Log, Char('j'), A::Log(TuiWidgetEvent::DownKey), "next target"),
    key(C::Log, Down, A::Log(TuiWidgetEvent::DownKey), "next target"),
    key(C::Log, Left, A::Log(TuiWidgetEvent::LeftKey), "show fewer levels"),
    key(C::Log, Right, A::Log(TuiWidgetEvent::RightKey), "show more levels"),
    key(
        C::Log,
        Char('-'),
        A::Log(TuiWidgetEvent::MinusKey),
        "capture fewer levels",
    ),
    key(
        C::Log,
        Char('+'),
        A::Log(TuiWidgetEvent::PlusKey),
        "capture more levels",
    ),
    key(
        C::Log,
        Char(' '),
        A::Log(TuiWidgetEvent::SpaceKey),
        "hide targets that are off",
    ),
    key(C::Log, PageUp, A::Log(TuiWidgetEvent::PrevPageKey), "scroll back"),
    key(C::Log, PageDown, A::Log(TuiWidgetEvent::NextPageKey), "scroll forward"),
    key(C::Log, Esc, A::Log(TuiWidgetEvent::EscapeKey), "back to live tail"),
    key(C::Confirm, Char('y'), A::Confirm, "yes, do it"),
    key(C::Confirm, Enter, A::Confirm, "yes, do it"),
    key(C::Confirm, Char('n'), A::Cancel, "no"),
    key(C::Confirm, Esc, A::Cancel, "no"),
    key(C::ConfirmRunAll, Char('y'), A::Confirm, "yes, run"),
    key(C::ConfirmRunAll, Enter, A::Confirm, "yes, run"),
    key(
        C::ConfirmRunAll,
        Char('b'),
        A::BackupThenRun,
        "back up the target first, then run",
    ),
    key(C::ConfirmRunAll, Char('n'), A::Cancel, "no"),
    key(C::ConfirmRunAll, Esc, A::Cancel, "no"),
    key(C::TextInput, Enter, A::Submit, "submit"),
    key(C::TextInput, Esc, A::Cancel, "cancel"),
    key(C::TextInput, Backspace, A::Backspace, "delete"),
    key(C::FixField, Enter, A::Submit, "set the field"),
    key(C::FixField, Esc, A::Cancel, "cancel"),
    key(C::FixField, Backspace, A::Backspace, "delete"),
    key(C::FixField, Tab, A::Down, "next field"),
    key(C::FixField, Down, A::Down, "next field"),
    key(C::FixField, BackTab, A::Up, "previous field"),
    key(C::FixField, Up, A::Up, "previous field"),
    key(C::Details, Char('j'), A::Down, "scroll down"),
    key(C::Details, Down, A::Down, "scroll down"),
    key(C::Details, Char('k'), A::Up, "scroll up"),
    key(C::Details, Up, A::Up, "scroll up"),
    key(C::Details, Esc, A::Close, "close"),
    key(C::Details, Enter, A::Close, "close"),
    key(C::Details, Char('q'), A::Close, "close"),
    key(C::Import, Char('j'), A::Down, "select next"),
    key(C::Import, Down, A::Down, "select next"),
    key(C::Import, Char('k'), A::Up, "select previous"),
    key(C::Import, Up, A::Up, "select previous"),
    key(C::Import, Char('g'), A::Top, "first"),
    key(C::Import, Home, A::Top, "first"),
    key(C::Import, Char('G'), A::Bottom, "last"),
    key(C::Import, End, A::Bottom, "last"),
    key(C::Import, Enter, A::Submit, "open / edit"),
    key(C::Import, Char('e'), A::ImportTarget, "target"),
    key(C::Import, Char('t'), A::ImportTransforms, "transforms"),
    key(C::Import, Char('d'), A::DryRun, "dry run"),
    key(C::Import, Char('s'), A::ImportSave, "save step"),
    key(C::Import, Esc, A::Close, "back / close"),
    key(C::Import, Char('q'), A::Close, "back / close"),
    key(C::Import, Char('?'), A::ToggleHelp, "help"),
    key(C::ImportInput, Enter, A::Submit, "set"),
    key(C::ImportInput, Esc, A::Cancel, "cancel"),
    key(C::ImportInput, Backspace, A::Backspace, "delete"),
    key(C::Assess, Char('j'), A::Down, "next step"),
    key(C::Assess, Down, A::Down, "next step"),
    key(C::Assess, Char('k'), A::Up, "previous step"),
    key(C::Assess, Up, A::Up, "previous step"),
    key(C::Assess, Char('r'), A::Reassess, "assess again"),
    key(C::Assess, Esc, A::Close, "close"),
    key(C::Assess, Char('q'), A::Close, "close"),
    key(C::Assess, Char('F'), A::Close, "close"),
    key(C::Assess, Char('?'), A::ToggleHelp, "help"),
    key(C::Help, Esc, A::Close, "close help"),
    key(C::Help, Char('?'), A::Close, "close help"),
    key(C::Help, Char('q'), A::Close, "close help"),
];

/// The context whose keys apply now.
pub fn active_context(state: &AppState) -> Context {
    if state.help {
        return Context::Help;
    }
    match &state.dialog {
        Some(Dialog::Confirm {
            action: ConfirmAction::RunAll,
            ..
        }) => Context::ConfirmRunAll,
        Some(Dialog::Confirm { .. }) => Context::Confirm,
        Some(Dialog::Rollback { .. } | Dialog::DecideValue { .. } | Dialog::ReviewNote { .. }) => Context::TextInput,
        Some(Dialog::EditReject { .. }) => Context::FixField,
        Some(Dialog::Details { .. }) => Context::Details,
        None if state.filter_editing => Context::TextInput,
        None if state.import.as_ref().is_some_and(|i| i.editing.is_some()) => Context::ImportInput,
        None if state.import.is_some() => Context::Import,
        None if state.assess.open => Context::Assess,
        None => Context::of_pane(state.focus),
    }
}

/// Contexts searched for a key, most specific first. Panes fall back to the global keys;
/// dialogs do not (their letters are text or answers), except that ctrl-c always works.
fn search_order(context: Context) -> &'static [Context] {
    match context {
        Context::Migrations => &[Context::Migrations, Context::Global],
        Context::Progress => &[Context::Progress, Context::Global],
        Context::Rejects => &[Context::Rejects, Context::Global],
        Context::Log => &[Context::Log, Context::Global],
        Context::Review => &[Context::Review, Context::Global],
        Context::Verify => &[Context::Verify, Context::Global],
        Context::Global => &[Context::Global],
        Context::Confirm => &[Context::Confirm],
        Context::ConfirmRunAll => &[Context::ConfirmRunAll],
        Context::TextInput => &[Context::TextInput],
        Context::FixField => &[Context::FixField],
        Context::Details => &[Context::Details],
        Context::Help => &[Context::Help],
        Context::Import => &[Context::Import],
        Context::ImportInput => &[Context::ImportInput],
        Context::Assess => &[Context::Assess],
    }
}

/// Modifiers that matter for matching: shift is already in the character ('R', '?') and in
/// BackTab, and terminals disagree on whether they report it.
fn significant(modifiers: KeyModifiers) -> KeyModifiers {
    modifiers & (KeyModifiers::CONTROL | KeyModifiers::ALT)
}

fn matches(b: &Binding, key: &KeyEvent) -> bool {
    b.code == key.code && significant(b.modifiers) == significant(key.modifiers)
}

pub fn lookup(context: Context, key: &KeyEvent) -> Option<Action> {
    let force_quit = KEYMAP.iter().find(|b| b.action == Action::ForceQuit && matches(b, key));
    if force_quit.is_some() {
        return Some(Action::ForceQuit);
    }
    search_order(context).iter().find_map(|ctx| {
        KEYMAP
            .iter()
            .find(|b| b.context == *ctx && matches(b, key))
            .map(|b| b.action)
    })
}

pub fn key_label(code: KeyCode, modifiers: KeyModifiers) -> String {
    let base = match code {
        Char(' ') => "space".to_string(),
        Char(c) => c.to_string(),
        Enter => "enter".into(),
        Esc => "esc".into(),
        Tab => "tab".into(),
        BackTab => "shift-tab".into(),
        Backspace => "backspace".into(),
        Up => "↑".into(),
        Down => "↓".into(),
        Left => "←".into(),
        Right => "→".into(),
        Home => "home".into(),
        End => "end".into(),
        PageUp => "pgup".into(),
        PageDown => "pgdn".into(),
        other => format!("{other:?}").to_lowercase(),
    };
    if modifiers.contains(KeyModifiers::CONTROL) {
        format!("ctrl-{base}")
    } else {
        base
    }
}

/// One help line: all keys of one action in one context.
#[derive(Debug, Clone, PartialEq)]
pub struct HelpLine {
    pub keys: String,
    pub help: &'static str,
}

/// The help line of the pane digits: one line for all of them ("1–6"), not one per pane (the
/// frames and the tab bar carry the numbers).
pub const FOCUS_HELP: &str = "focus pane by number";

/// The help lines of a context, generated from `KEYMAP`.
pub fn help_lines(context: Context) -> Vec<HelpLine> {
    let mut out: Vec<(Action, HelpLine)> = Vec::new();
    let mut digits: Vec<String> = Vec::new();
    // A refused key is shown as the global action marked ✗, not as a line of its own.
    for b in KEYMAP
        .iter()
        .filter(|b| b.context == context && b.action != Action::NotHere)
    {
        let label = key_label(b.code, b.modifiers);
        if let Action::Focus(_) = b.action {
            if digits.is_empty() {
                out.push((
                    b.action,
                    HelpLine {
                        keys: String::new(),
                        help: FOCUS_HELP,
                    },
                ));
            }
            digits.push(label);
            continue;
        }
        match out.iter_mut().find(|(a, _)| *a == b.action) {
            Some((_, line)) => {
                line.keys.push_str(", ");
                line.keys.push_str(&label);
            }
            None => out.push((
                b.action,
                HelpLine {
                    keys: label,
                    help: b.help,
                },
            )),
        }
    }
    if let Some((_, line)) = out.iter_mut().find(|(a, _)| matches!(a, Action::Focus(_))) {
        line.keys = key_range(&digits);
    }
    out.into_iter().map(|(_, l)| l).collect()
}

/// "1–6" for consecutive single characters, else "1, 2, 4".
fn key_range(labels: &[String]) -> String {
    let chars: Vec<char> = labels
        .iter()
        .filter_map(|l| {
            let mut it = l.chars();
            it.next().filter(|_| it.next().is_none())
        })
        .collect();
    let consecutive = chars.len() == labels.len() && chars.windows(2).all(|w| w[1] as u32 == w[0] as u32 + 1);
    match (consecutive, chars.first(), chars.last()) {
        (true, Some(first), Some(last)) if labels.len() > 2 => format!("{first}–{last}"),
        _ => labels.join(", "),
    }
}

/// Whether every key of a global action is taken by the pane's own keys (so the action does
/// not work while that pane is focused). The help overlay says so.
pub fn shadowed(pane: Context, action: Action) -> bool {
    let mut global = KEYMAP
        .iter()
        .filter(|b| b.context == Context::Global && b.action == action)
        .peekable();
    global.peek().is_some()
        && global.all(|g| {
            KEYMAP
                .iter()
                .any(|b| b.context == pane && b.code == g.code && b.modifiers == g.modifiers)
        })
}

/// Lines the help overlay adds under a pane's keys (full width), for what one line per key
/// cannot say.
pub fn help_notes(context: Context) -> &'static [&'static str] {
    match context {
        Context::Review => &[
            "U undoes this session's last decision: the field gets back the value it",
            "had before, the discrepancy is open again (audited). A split stays.",
            "A note (c) goes with the next decision; re-deciding one asks first.",
        ],
        Context::Import => &[
            "i opens this pane from anywhere: the files of the project's file:// source",
            "folder. enter on a file asks for the target table, then shows the preview",
            "and the suggested mapping; d dry-runs it (nothing is written), s saves it",
            "as a new data step (the console shows it after a restart).",
        ],
        Context::Verify => &[
            "V runs the checks of `cutover verify`. They only read the databases, so",
            "V works while another process holds the lock; they also run after `a`.",
        ],
        _ => &[],
    }
}

/// The review pane's decision keys: listed in the pane's own footer (not the hint bar).
pub const REVIEW_DECISIONS: [Action; 7] = [
    Action::TakeA,
    Action::TakeB,
    Action::DecideValue,
    Action::Split,
    Action::ReviewNote,
    Action::UndoDecision,
    Action::ToggleShowAll,
];

/// The first key of an action in a context, for hints ("n run next").
pub fn first_key(context: Context, action: Action) -> Option<String> {
    KEYMAP
        .iter()
        .find(|b| b.context == context && b.action == action)
        .map(|b| key_label(b.code, b.modifiers))
}
