//! `moescope generate`: one prompt, streamed; with steering, the baseline and the steered
//! text side by side and where they diverge; optionally the experts chosen per token.

use std::io::Write;

use anyhow::{bail, Context, Result};
use moescope_engine::{
    generate, CaptureData, Checkpoint, GenerateOptions, GenerateRequest, MoeHook, Recorder,
    RoutingPolicy, SelfContrast,
};
use moescope_workbench::generation::{encode_prompt, first_divergence, Exchange, PromptText};
use moescope_workbench::open::steering_policy;

use crate::cli::GenerateArgs;
use crate::terminal::open_model;

pub fn run(args: &GenerateArgs) -> Result<()> {
    // Checked before the (possibly long) load.
    let earlier = conversation(&args.chat, &args.reply)?;
    let ck = open_model(&args.model)?;
    let c = ck.model.config();
    let policy = steering_policy(&ck, args.steer.as_deref(), &args.mask)?;
    let (text, prompt) = prompt_input(&ck, args, &earlier)?;
    if prompt.is_empty() {
        bail!("the prompt is empty after tokenisation; give some text");
    }
    let opts = GenerateOptions {
        max_new_tokens: args.max_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
        stop_strings: args.stop.clone(),
        ignore_eos: false,
        contrast: match args.contrast_top_k {
            None => None,
            Some(k) => {
                let contrast =
                    SelfContrast::weak_top_k(c, k, args.contrast_beta, args.contrast_alpha);
                contrast
                    .weak
                    .validate(&c.moe_layers(), c.moe.num_experts, c.moe.top_k)
                    .context("--contrast-top-k")?;
                Some(contrast)
            }
        },
        cancel: None,
    };
    let mut recorder = Recorder::new();
    if args.show_routing {
        recorder.subscribe_all_layers(MoeHook::TopkIds);
    }
    let prompts = std::slice::from_ref(&prompt);
    let result = if policy.is_empty() {
        print!("{text}");
        std::io::stdout().flush()?;
        let mut streamer = Streamer::default();
        let request = GenerateRequest {
            model: &ck.model,
            codec: Some(&ck.codec),
            policy: &policy,
            options: &opts,
        };
        let out = generate(
            &request,
            prompts,
            args.show_routing.then_some(&mut recorder),
            |_, t| streamer.push(&ck, t),
        )?
        .remove(0);
        streamer.finish(&out.text);
        out
    } else {
        let none = RoutingPolicy::new();
        let base = GenerateRequest {
            model: &ck.model,
            codec: Some(&ck.codec),
            policy: &none,
            options: &opts,
        }
        .run(prompts)?
        .remove(0);
        let rec = args.show_routing.then_some(&mut recorder);
        let steered = generate(
            &GenerateRequest {
                model: &ck.model,
                codec: Some(&ck.codec),
                policy: &policy,
                options: &opts,
            },
            prompts,
            rec,
            |_, _| {},
        )?
        .remove(0);
        println!(
            "── baseline ─────────────────────────────\n{text}{}",
            base.text
        );
        println!(
            "── steered ──────────────────────────────\n{text}{}",
            steered.text
        );
        let shorter = base.tokens.len().min(steered.tokens.len());
        match first_divergence(&base.tokens, &steered.tokens) {
            Some(i) if i < shorter => println!("── outputs differ from generated token {i} on"),
            Some(_) => println!("── outputs agree until one of them stops"),
            None => println!("── outputs are identical"),
        }
        steered
    };
    eprintln!(
        "[{} tokens, stopped: {:?}]",
        result.tokens.len(),
        result.stop
    );
    if args.show_routing {
        print_routing(&ck, &prompt, &result.tokens, &recorder)?;
    }
    Ok(())
}

/// The text and token ids to feed the model: the raw prompt, or the conversation through the
/// template.
fn prompt_input(
    ck: &Checkpoint,
    args: &GenerateArgs,
    earlier: &[Exchange],
) -> Result<(String, Vec<u32>)> {
    if let Some(p) = &args.prompt {
        return Ok(encode_prompt(&ck.codec, PromptText::Raw(p))?);
    }
    let Some(user) = args.chat.last() else {
        bail!("give --prompt TEXT or --chat MESSAGE");
    };
    let prompt = PromptText::Chat {
        system: args.system.as_deref(),
        earlier,
        user,
    };
    Ok(encode_prompt(&ck.codec, prompt)?)
}

/// The exchanges before the last `--chat` message: each `--chat` but the last paired with the
/// `--reply` of the same index.
fn conversation(chats: &[String], replies: &[String]) -> Result<Vec<Exchange>> {
    if replies.len() + 1 != chats.len() && !chats.is_empty() {
        bail!(
            "{} --chat messages need {} --reply texts (one answer to every message but the last), \
             got {}",
            chats.len(),
            chats.len() - 1,
            replies.len()
        );
    }
    Ok(chats
        .iter()
        .zip(replies)
        .map(|(user, assistant)| Exchange {
            user: user.clone(),
            assistant: assistant.clone(),
        })
        .collect())
}

/// Prints generated text as it arrives, whole characters only (a byte-level token may end in
/// the middle of one).
#[derive(Default)]
struct Streamer {
    tokens: Vec<u32>,
    printed: usize,
}

impl Streamer {
    fn push(&mut self, ck: &Checkpoint, token: u32) {
        self.tokens.push(token);
        if let Ok(s) = ck.codec.decode(&self.tokens) {
            if !s.ends_with('\u{fffd}')
                && s.len() > self.printed
                && s.is_char_boundary(self.printed)
            {
                print!("{}", &s[self.printed..]);
                self.printed = s.len();
                let _ = std::io::stdout().flush();
            }
        }
    }

    /// Prints whatever of the final text is still unprinted, and ends the line.
    fn finish(&self, text: &str) {
        if text.len() > self.printed && text.is_char_boundary(self.printed) {
            print!("{}", &text[self.printed..]);
        }
        println!();
    }
}

/// Prints, per token, the experts chosen at each MoE layer.
fn print_routing(ck: &Checkpoint, prompt: &[u32], generated: &[u32], rec: &Recorder) -> Result<()> {
    let layers = ck.model.config().moe_layers();
    // `[moe layer][position]`: each forward call's rows, as many experts as that call chose
    // (a steering profile can change top-k per layer and for generated tokens only).
    let mut per_layer: Vec<Vec<&[u32]>> = vec![Vec::new(); layers.len()];
    for cap in rec.captures() {
        if let (Some(i), CaptureData::U32(ids)) =
            (layers.iter().position(|&l| l == cap.point.layer), &cap.data)
        {
            let k = cap.shape[1].max(1);
            per_layer[i].extend(ids.chunks(k));
        }
    }
    let fed: Vec<(u32, bool)> = prompt
        .iter()
        .map(|&t| (t, false))
        .chain(generated.iter().map(|&t| (t, true)))
        .collect();
    println!("\nrouting (experts chosen, best first; * = generated token)");
    let header: Vec<String> = layers.iter().map(|l| format!("L{l}")).collect();
    println!("{:>5}  {:<16} {}", "pos", "token", header.join(" | "));
    for (pos, &(tok, gen)) in fed.iter().enumerate() {
        let Some(cells) = per_layer
            .iter()
            .map(|rows| {
                rows.get(pos)
                    .map(|ids| ids.iter().map(u32::to_string).collect::<Vec<_>>().join(","))
            })
            .collect::<Option<Vec<String>>>()
        else {
            break;
        };
        let text = format!(
            "{:?}{}",
            ck.codec.token_text(tok),
            if gen { "*" } else { "" }
        );
        println!("{pos:>5}  {text:<16} {}", cells.join(" | "));
    }
    Ok(())
}
