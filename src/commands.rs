//! The subcommands: each loads what it needs through the engine and prints the result.

use std::io::Write;

use anyhow::{bail, Context, Result};
use candle_core::DType;
use moescope_engine::config::QkNorm;
use moescope_engine::{
    generate, CaptureData, ChatMessage, ChatOptions, Checkpoint, CheckpointSummary,
    GenerateOptions, GenerateRequest, MoeHook, Recorder, RoutingPolicy, SelfContrast,
};

use crate::cli::{Cli, Command, GenerateArgs, GuiArgs, ModelArgs};
use crate::session::{device, dtype, load, model_dir, steering_policy};

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info(args) => info(&args),
        Command::Generate(args) => generate_cmd(&args),
        Command::Bench(args) => crate::bench::run(&args),
        Command::Eval(args) => crate::eval::run(&args),
        Command::Record(args) => crate::record::run(&args),
        Command::Analyze(args) => crate::analyze::run(&args),
        Command::Experiment(args) => crate::experiment::run(&args),
        Command::Gui(args) => gui(&args),
    }
}

/// Opens the desktop app on the chosen checkpoint (loaded on the app's worker thread).
fn gui(args: &GuiArgs) -> Result<()> {
    if !device(&args.model.device)?.is_cpu()
        || !matches!(dtype(&args.model.dtype)?, None | Some(DType::F32))
    {
        bail!("the desktop app runs its model on the cpu in f32; leave out --device and --dtype");
    }
    let dir = model_dir(&args.model)?;
    #[cfg(feature = "gui")]
    {
        let start = moescope_gui::StartOptions {
            prompt: args.prompt.clone(),
            ranking: args.ranking.clone(),
            steer: args.steer.clone(),
            run: args.run,
        };
        moescope_gui::run(dir, start)?;
        Ok(())
    }
    #[cfg(not(feature = "gui"))]
    bail!(
        "this moescope was built without the desktop app (--no-default-features); build it with \
         `cargo build --release --features gui` to open {}",
        dir.display()
    )
}

/// Describes the checkpoint from its config and safetensors headers, loading no weight.
fn info(args: &ModelArgs) -> Result<()> {
    let dir = model_dir(args)?;
    let device = device(&args.device)?;
    let ck = CheckpointSummary::read(&dir)
        .with_context(|| format!("cannot read the checkpoint in {}", dir.display()))?;
    let compute = dtype(&args.dtype)?
        .or(ck.stored_dtype)
        .unwrap_or(DType::F32);
    let c = &ck.config;
    let moe_layers = c.moe_layers();
    let dense: Vec<usize> = (0..c.num_layers())
        .filter(|l| !moe_layers.contains(l))
        .collect();
    let a = &c.attention;
    let rows: Vec<(&str, String)> = vec![
        ("model", ck.dir.display().to_string()),
        ("architecture", c.architecture.model_type().to_string()),
        (
            "layers",
            format!(
                "{} (MoE: {}; dense: {})",
                c.num_layers(),
                list(&moe_layers),
                list(&dense)
            ),
        ),
        (
            "experts",
            format!(
                "{} routed per MoE layer, top-{}, {}{}, expert width {}",
                c.moe.num_experts,
                c.moe.top_k,
                c.moe.routing,
                if c.moe.selection_bias {
                    ", selection bias"
                } else {
                    ""
                },
                c.moe.expert_intermediate_size
            ),
        ),
        (
            "shared experts",
            match &c.moe.shared_expert {
                Some(s) => format!(
                    "1 per MoE layer, width {}{}",
                    s.intermediate_size,
                    if s.sigmoid_gate { ", sigmoid gate" } else { "" }
                ),
                None => "none".into(),
            },
        ),
        (
            "attention",
            format!(
                "{}{} heads, {} kv heads, head_dim {}, q/k norm {}, qkv bias {}{}{}",
                if a.mla.is_some() {
                    "multi-head latent attention, "
                } else {
                    ""
                },
                a.num_heads,
                a.num_kv_heads,
                a.head_dim,
                match a.qk_norm {
                    QkNorm::None => "none",
                    QkNorm::PerHead => "per head",
                    QkNorm::Full => "full projection",
                },
                a.qkv_bias,
                if a.sinks { ", attention sinks" } else { "" },
                sliding_summary(c),
            ),
        ),
        ("hidden size", c.hidden_size.to_string()),
        ("vocabulary", c.vocab_size.to_string()),
        ("context", c.max_position_embeddings.to_string()),
        (
            "dtype",
            format!(
                "stored {} (config says {}); computed in {} on {}",
                ck.dtypes
                    .0
                    .iter()
                    .map(|(d, n)| format!("{d}: {}", human(*n)))
                    .collect::<Vec<_>>()
                    .join(", "),
                c.declared_dtype.as_deref().unwrap_or("nothing"),
                dtype_name(compute),
                if device.is_cpu() { "cpu" } else { "cuda" },
            ),
        ),
        (
            "weights",
            match c.fp8_block {
                Some((r, k)) => format!(
                    "FP8 e4m3 projections with one scale per {r}×{k} block, kept compressed \
                     (a byte a value); the rest as stored"
                ),
                None => "as stored (MXFP4 experts, where present, kept compressed)".into(),
            },
        ),
        (
            "bytes",
            format!(
                "{:.2} GB on disk, {:.2} GB loaded in {}",
                ck.stored_bytes as f64 / 1e9,
                ck.loaded_bytes(compute) as f64 / 1e9,
                dtype_name(compute)
            ),
        ),
        (
            "parameters",
            format!(
                "{} total, {} active per token",
                human(ck.num_params),
                human(ck.num_active_params())
            ),
        ),
        (
            "chat template",
            if ck.has_chat_template { "yes" } else { "no" }.into(),
        ),
    ];
    for (k, v) in rows {
        println!("{k:<15} {v}");
    }
    Ok(())
}

/// `, sliding window W on layers …` when any layer uses one.
fn sliding_summary(c: &moescope_engine::ModelConfig) -> String {
    let windowed: Vec<(usize, usize)> = c
        .layers
        .iter()
        .enumerate()
        .filter_map(|(l, spec)| spec.sliding_window.map(|w| (l, w)))
        .collect();
    match windowed.first() {
        None => String::new(),
        Some(&(_, w)) => {
            let layers: Vec<usize> = windowed.iter().map(|&(l, _)| l).collect();
            format!(", sliding window {w} on layers {}", list(&layers))
        }
    }
}

fn list(v: &[usize]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn human(n: usize) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

fn generate_cmd(args: &GenerateArgs) -> Result<()> {
    let ck = load(&args.model)?;
    let c = ck.model.config();
    let policy = steering_policy(&ck, args.steer.as_deref(), &args.mask)?;
    let (text, prompt) = prompt_input(&ck, args)?;
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
        match base
            .tokens
            .iter()
            .zip(&steered.tokens)
            .position(|(a, b)| a != b)
        {
            Some(i) => println!("── outputs differ from generated token {i} on"),
            None if base.tokens == steered.tokens => println!("── outputs are identical"),
            None => println!("── outputs agree until one of them stops"),
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

/// The text and token ids to feed the model: the raw prompt, or the chat message through the
/// template (encoded without added special tokens, as transformers does).
fn prompt_input(ck: &Checkpoint, args: &GenerateArgs) -> Result<(String, Vec<u32>)> {
    match (&args.prompt, &args.chat) {
        (Some(p), _) => Ok((p.clone(), ck.codec.encode(p)?)),
        (None, Some(user)) => {
            let mut messages = Vec::new();
            if let Some(s) = &args.system {
                messages.push(ChatMessage::new("system", s));
            }
            messages.push(ChatMessage::new("user", user));
            let text = ck
                .codec
                .apply_chat_template(&messages, &ChatOptions::default())?;
            let ids = ck.codec.encode_rendered_chat(&text)?;
            Ok((text, ids))
        }
        (None, None) => bail!("give --prompt TEXT or --chat MESSAGE"),
    }
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

/// `bf16`, `f32`, … as the CLI spells dtypes.
fn dtype_name(d: DType) -> String {
    format!("{d:?}").to_lowercase()
}
