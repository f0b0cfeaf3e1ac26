//! The log pane: tui-logger's widget over what tracing captured (the same lines go to
//! `cutover.log` in the project folder).

use crate::console::state::{AppState, Pane};
use crate::console::view::theme::Theme;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Color;
use ratatui::text::Line;
use ratatui::widgets::{BorderType, Widget};
use tui_logger::{TuiLoggerLevelOutput, TuiLoggerSmartWidget, TuiWidgetState};

pub struct LogPane<'a> {
    pub state: &'a AppState,
    pub log: &'a TuiWidgetState,
    pub focused: bool,
}

impl Widget for LogPane<'_> {
    fn render(self, area: Rect, buf: &mut Buffer) {
        let theme = Theme::of(self.state);
        // The smart widget draws its own frames (log, and the target selector that carries
        // the level filter), so it gets the pane's title and border style instead of a block.
        let title = Line::styled(
            format!(
                " [{}] {} · h levels by target · pgup scroll ",
                Pane::Log.number(),
                Pane::Log.title()
            ),
            if self.focused { theme.bold() } else { theme.plain() },
        );
        TuiLoggerSmartWidget::default()
            .style(theme.plain())
            .style_error(theme.log_level(Color::Red))
            .style_warn(theme.log_level(Color::Yellow))
            .style_info(theme.log_level(Color::Cyan))
            .style_debug(theme.log_level(Color::Green))
            .style_trace(theme.log_level(Color::Magenta))
            .style_off(theme.dim())
            .style_hide(theme.dim())
            .style_show(theme.plain())
            .highlight_style(theme.selected())
            .border_style(theme.border(self.focused))
            .border_type(if self.focused {
                BorderType::Thick
            } else {
                BorderType::Plain
            })
            .output_separator(' ')
            .output_timestamp(Some("%H:%M:%S".to_string()))
            .output_level(Some(TuiLoggerLevelOutput::Abbreviated))
            .output_target(true)
            .output_file(false)
            .output_line(false)
            .title_log(title)
            .title_target("targets")
            .state(self.log)
            .render(area, buf);
    }
}
