import ArgumentParser
import Foundation
import Strata
import StrataMemory
import StrataJSON
import StrataPlanner

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "plan", abstract: "Plan weights and KV across RAM and disk under a RAM budget, and predict the speed.")
    @Option(name: [.customLong("model"), .customShort("m")], help: "Model folder (config.json; safetensors headers unless --dtype) or GGUF file.") var model: String
    @Option(name: .customLong("ram-budget"), help: "RAM budget, e.g. 2GiB (one host; with --hosts each host's own).") var ramBudget: String?
    @Option(help: "Plan across hosts (ranks of mpirun): a JSON file listing each host's name, ram_budget, and optionally profile (a `strata profile` JSON file), network_bytes_per_second and network_latency_seconds of its link to the next host (docs/distributed.md).") var hosts: String?
    @OptionGroup var distributed: DistributedOption
    @Option(help: "Batch size, or auto.") var batch: String = "auto"
    @Option(name: .customLong("prompt-tokens")) var promptTokens = 512
    @Option(name: .customLong("output-tokens")) var outputTokens = 128
    @Option(help: "throughput or latency.") var objective: String = "throughput"
    @Option(help: "text, json or markdown.") var format: String = "text"
    @Option(help: "Write the placement strip and budget curve as SVG.") var svg: String?
    @Option(help: "Plan from config.json alone with this weight dtype (\(DType.names)): no weights needed.") var dtype: String?
    @Option(help: "Write the plan JSON (for generate --plan).") var out: String?
    @OptionGroup var threads: ThreadOption
    @OptionGroup var kv: KVTypeOption

    func run() throws {
        // outputs are checked before any work (a FIFO or device named as one is refused)
        for path in [out, svg].compactMap({ $0 }) { try FileIO.requireReplaceable(path) }
        try threads.apply()
        if let hosts { return try planHosts(hosts) }
        guard let ramBudget else { throw ValidationError("--ram-budget is needed (or --hosts)") }
        guard let budget = parseByteSize(ramBudget) else { throw ValidationError("--ram-budget: '\(ramBudget)' is not a size") }
        guard let obj = PlanRequest.Objective(rawValue: objective) else { throw ValidationError("--objective must be throughput or latency") }
        let b: Int? = batch == "auto" ? nil : Int(batch)
        if batch != "auto" && (b == nil || b! < 1 || b! > 4096) { throw ValidationError("--batch must be auto or an integer in 1...4096") }
        try checkFlag(promptTokens, 1...(1 << 24), "--prompt-tokens")
        try checkFlag(outputTokens, 1...(1 << 24), "--output-tokens")
        let dt = try parseDType(dtype)
        guard ["text", "json", "markdown"].contains(format) else { throw ValidationError("--format must be text, json or markdown") }
        let profile = try loadProfile()
        let workload = Workload(batch: b ?? 1, promptTokens: promptTokens, outputTokens: outputTokens)
        let kvType = try kv.type(ModelFolder(path: model).spec)
        let inv = try PlannerInventory.build(directory: model, workload: workload, dtype: dt, kvType: kvType)
        let plan = try Planner.plan(inv: inv, profile: profile, request: PlanRequest(budgetBytes: budget, batch: b, promptTokens: promptTokens,
                                                                                    outputTokens: outputTokens, objective: obj,
                                                                                    bf16Products: Kernels.prefillUsesBF16Products(dtype: inv.weightDType ?? .f32),
                                                                                    exactActivations: Kernels.activations == .f32, kvType: kvType))
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        if let out { try FileIO.writeAtomically(out, enc.encode(plan)) }
        if let svg { try FileIO.writeAtomically(svg, Data(PlanReport.svg(plan, inv: inv).utf8)) }
        switch format {
        case "json": print(String(decoding: try enc.encode(plan), as: UTF8.self))
        default:
            print(PlanReport.text(plan, inv: inv, profile: profile, markdown: format == "markdown"), terminator: "")
            let folder = try ModelFolder(path: model)
            let rows = StorageAdvice.compare(folder: folder, inv: inv, profile: profile, request: plan.request)
            print(format == "markdown" ? "\n## Other storage types at this budget (predicted)\n" : "\nOther storage types at this budget (predicted)")
            print(StorageAdvice.text(rows, markdown: format == "markdown"), terminator: "")
        }
    }

    /// `--hosts`: the model over several hosts as `mpirun` runs it (`ClusterPlanner`).
    func planHosts(_ path: String) throws {
        if ramBudget != nil { throw ValidationError("--ram-budget and --hosts: each host's budget is in the hosts file") }
        guard ["text", "json"].contains(format) else { throw ValidationError("--format must be text or json with --hosts") }
        let b: Int? = batch == "auto" ? 1 : Int(batch)
        guard let b, b >= 1, b <= 4096 else { throw ValidationError("--batch must be auto (1 with --hosts) or an integer in 1...4096") }
        try checkFlag(promptTokens, 1...(1 << 24), "--prompt-tokens")
        try checkFlag(outputTokens, 1...(1 << 24), "--output-tokens")
        let specs = try HostsFile.read(path)
        let dt = try parseDType(dtype)
        let profile = try loadProfile()
        let workload = Workload(batch: b, promptTokens: promptTokens, outputTokens: outputTokens)
        let kvType = try kv.type(ModelFolder(path: model).spec)
        let inv = try PlannerInventory.build(directory: model, workload: workload, dtype: dt, kvType: kvType)
        let request = PlanRequest(budgetBytes: specs[0].ramBudgetBytes, batch: b, promptTokens: promptTokens, outputTokens: outputTokens,
                                  bf16Products: Kernels.prefillUsesBF16Products(dtype: inv.weightDType ?? .f32),
                                  exactActivations: Kernels.activations == .f32, kvType: kvType)
        let plan: ClusterPlan
        do { plan = try ClusterPlanner.plan(inv: inv, hosts: specs, request: request, profile: profile, shardExperts: distributed.mpiExperts == "shard") } catch let e as ClusterPlanError {
            throw ValidationError("\(path): \(e)")
        }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        if let out { try FileIO.writeAtomically(out, enc.encode(plan)) }
        if format == "json" { print(String(decoding: try enc.encode(plan), as: UTF8.self)); return }
        print("\(inv.name) over \(specs.count) hosts (batch \(b), \(plan.microBatches) micro-batches\(plan.shardExperts ? ", experts shared out over every host" : ""))")
        print("host".padding(toLength: 14, withPad: " ", startingAt: 0) + "layers".padding(toLength: 12, withPad: " ", startingAt: 0)
              + (plan.shardExperts ? "experts".padding(toLength: 12, withPad: " ", startingAt: 0) : "")
              + "resident".padding(toLength: 12, withPad: " ", startingAt: 0) + "streamed".padding(toLength: 10, withPad: " ", startingAt: 0)
              + "step ms".padding(toLength: 10, withPad: " ", startingAt: 0) + "hop ms")
        for st in plan.stages {
            print(st.host.padding(toLength: 14, withPad: " ", startingAt: 0) + "\(st.firstLayer)..<\(st.endLayer)".padding(toLength: 12, withPad: " ", startingAt: 0)
                  + (plan.shardExperts ? "\(st.firstExpert ?? 0)..<\(st.endExpert ?? 0)".padding(toLength: 12, withPad: " ", startingAt: 0) : "")
                  + formatBytes(st.residentBytes).padding(toLength: 12, withPad: " ", startingAt: 0) + "\(st.streamedLayers.count)".padding(toLength: 10, withPad: " ", startingAt: 0)
                  + String(format: "%-10.2f%.3f", 1000 * st.stepSeconds, 1000 * st.hopSeconds))
        }
        print(String(format: "predicted decode: %.2f tokens/s per sequence, %.2f over the batch (step %.1f ms, of which %.2f ms on the network)",
                     plan.decodeTokensPerSecond, plan.aggregateTokensPerSecond, 1000 * plan.decodeStepSeconds, 1000 * plan.networkSecondsPerStep))
        if let one = plan.oneHostDecodeTokensPerSecond {
            print(String(format: "the first host alone under its budget: %.2f tokens/s per sequence", one))
        } else if let note = plan.oneHostNote {
            print("the first host alone: \(note)")
        }
    }
}

/// `strata plan --hosts`: `{"hosts": [{"name": "a", "ram_budget": "16GiB", "profile": "a.json",
/// "network_bytes_per_second": 125000000, "network_latency_seconds": 0.0002}, ...]}` in rank
/// order. A missing link is 1 Gbit/s and 0.2 ms; a missing profile is this machine's. Every other
/// field is refused by name.
enum HostsFile {
    static func read(_ path: String) throws -> [HostSpec] {
        guard let data = try FileIO.readSmallFile(path, limit: 1 << 20) else { throw ValidationError("--hosts \(path): cannot read it") }
        let doc: JSONValue
        do { doc = try JSONValue.parse(data) } catch { throw ValidationError("--hosts \(path): not JSON (\(error))") }
        /// An object's fields, each once and each one of `known`.
        func fields(_ v: JSONValue, _ at: String, _ known: Set<String>) throws -> [String: JSONValue] {
            guard case let .object(pairs) = v else { throw ValidationError("\(at): an object is needed, not \(v.typeName)") }
            var out: [String: JSONValue] = [:]
            for (k, x) in pairs {
                guard known.contains(k) else { throw ValidationError("\(at): unknown field '\(k)'") }
                guard out.updateValue(x, forKey: k) == nil else { throw ValidationError("\(at): field '\(k)' given twice") }
            }
            return out
        }
        let top = try fields(doc, "--hosts \(path)", ["hosts"])
        guard let list = top["hosts"]?.arrayValue else { throw ValidationError("--hosts \(path): not a JSON object with a \"hosts\" list of objects") }
        guard !list.isEmpty, list.count <= 4096 else { throw ValidationError("--hosts \(path): \(list.count) hosts (1...4096)") }
        return try list.enumerated().map { (i, item) in
            let at = "--hosts \(path): hosts[\(i)]"
            let h = try fields(item, at, ["name", "ram_budget", "profile", "network_bytes_per_second", "network_latency_seconds"])
            var name = "host\(i)"
            if let v = h["name"] { guard let s = v.stringValue else { throw ValidationError("\(at).name: a string") }; name = s }
            let budget: Int?
            switch h["ram_budget"] {
            case let .string(s)?: budget = parseByteSize(s)
            case let .int(n)?: budget = n
            default: budget = nil
            }
            guard let budget, budget > 0 else { throw ValidationError("\(at).ram_budget: a size such as \"16GiB\" is needed") }
            func positive(_ key: String, _ fallback: Double) throws -> Double {
                let d: Double
                switch h[key] {
                case nil: return fallback
                case let .int(n)?: d = Double(n)
                case let .double(x)?: d = x
                default: throw ValidationError("\(at).\(key): a positive number")
                }
                guard d.isFinite, d > 0 else { throw ValidationError("\(at).\(key): a positive number") }
                return d
            }
            var profile: HardwareProfile? = nil
            if let p = h["profile"] {
                guard let file = p.stringValue else { throw ValidationError("\(at).profile: a path to a `strata profile` JSON file") }
                let dir = (path as NSString).deletingLastPathComponent
                let full = file.hasPrefix("/") ? file : (dir as NSString).appendingPathComponent(file)
                do { profile = try JSONDecoder().decode(HardwareProfile.self, from: Data(contentsOf: URL(fileURLWithPath: full))) } catch {
                    throw ValidationError("\(at).profile: \(full): \(error)")
                }
            }
            return HostSpec(name: name, ramBudgetBytes: budget, profile: profile,
                            networkBytesPerSecond: try positive("network_bytes_per_second", 125e6), networkLatencySeconds: try positive("network_latency_seconds", 2e-4))
        }
    }
}
