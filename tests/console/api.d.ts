// The JSON answers of the instance's APIs that the console reads (investigation.md, "Shapes";
// slo.md for /api/slos). Global types, for the console's JSDoc.

type Outcome = "fault" | "error" | "throttle" | "ok";

interface Figures {
  requests: number;
  faults: number;
  errors: number;
  throttles: number;
  availability: number | null;
  p50Seconds: number | null;
  p90Seconds: number | null;
  p99Seconds: number | null;
}

/** GET /api/service-map */
interface ServiceMap { nodes: MapNode[]; edges: MapEdge[] }
interface MapNode {
  id: string; name: string; environment: string; kind: string;
  requests: number; faults: number; errors: number; throttles: number;
  availability: number | null; p50Seconds: number | null; p99Seconds: number | null; sloStatus: string | null;
}
interface MapEdge {
  id: string; source: string; target: string; kind: "call" | "publish" | "delivery";
  requests: number; faults: number; errors: number; throttles: number;
  p50Seconds: number | null; p99Seconds: number | null;
}

/** GET /api/services/overview */
interface ServicesOverview {
  windowSeconds: number; environments: string[]; partial: string[]; slosConfigured: boolean;
  services: (MapNode & { trend: number[] | null })[];
}

/** GET /api/series */
interface SeriesAnswer { windowSeconds: number; operations: SeriesRow[]; dependencies: SeriesRow[] }
interface SeriesRow extends Figures {
  service: string; operation: string; environment: string;
  remoteService?: string; remoteOperation?: string;
}

/** GET /api/history */
interface SeriesHistory { stepSeconds: number; points: HistoryPoint[] }
interface HistoryPoint extends Figures { time: string; traceIds: string[] }

/** GET /api/traces */
interface TraceSummary {
  traceId: string; startUnixNano: string; durationSeconds: number; spanCount: number;
  rootService: string; rootOperation: string; services: string[]; outcome: Outcome;
  httpStatus: number | null; decision: "kept" | "dropped"; rule: string; heldBy: string | null;
}
/** GET /api/traces/{id} */
interface Trace extends TraceSummary { spans: Span[] | null }
interface Span {
  spanId: string; parentSpanId: string | null; service: string; name: string; kind: string;
  startUnixNano: string; durationSeconds: number; outcome: Outcome; status: string;
  httpStatus: number | null; attributes: Record<string, unknown> | null;
}

/** GET /api/contributors */
interface Contributors {
  dimension: string; by: string; estimated: boolean;
  contributors: { value: string; requests: number; faults: number; errors: number; throttles: number;
    availability: number | null; p99Seconds: number | null; traceIds: string[] }[];
}

/** GET /api/compare */
interface Comparison {
  selection: { requests: number }; baseline: { requests: number }; estimated: boolean;
  keys: { key: string; values: ComparedValue[] }[];
}
interface ComparedValue {
  value: string; selection: number; baseline: number; selectionShare: number; baselineShare: number;
  lift: number | null; traceIds: string[];
}

/** GET /api/exceptions */
interface ExceptionsAnswer { estimated: boolean; groups: ExceptionGroup[] }
/** GET /api/deployments */
interface DeploymentsAnswer { deployments: Deployment[] }
interface Deployment {
  service: string; environment: string; version: string; previousVersion: string; firstSeen: string; lastSeen: string;
  instances: string[]; rolledBack: boolean; verdict: "degraded" | "ok" | "pending"; zScore: number | null;
  before: VersionFigures; after: VersionFigures; estimated: boolean;
}
interface VersionFigures {
  requests: number; faults: number; errors: number; faultRate: number | null; errorRate: number | null;
  p99Seconds: number | null; instances: string[];
}
interface ExceptionGroup {
  id: string; service: string; operation: string; environment: string; type: string; message: string; frame: string;
  count: number; firstSeen: string; lastSeen: string; versions: string[]; instances: string[]; traceIds: string[];
  exampleMessage: string; exampleStack: string;
}

/** GET /api/slos: { slos: SloReport[] } */
interface SloReport {
  name: string; service: string; operation: string | null; sli: string; goal: number; window: string;
  attainment: number | null; errorBudget: ErrorBudget; burnRates: { window: string; burnRate: number }[];
  status: string; tiers: string[]; firing: string[];
}
interface ErrorBudget { unit: string; total: number; remaining: number; remainingRatio: number }
/** GET /api/slos/{name}/history: { points: SloHistoryPoint[] } */
interface SloHistoryPoint {
  time: string; attainment: number | null; errorBudget: ErrorBudget;
  burnRates: { window: string; burnRate: number }[]; status: string; firing: string[];
}

/** GET /api/pipeline (this instance's counters) */
interface Pipeline {
  spansReceived: number; spansRejected: number; spansForwarded: number; tracesForwarded: number;
  deadLetters: number; bufferedSpans: number; bufferedTraces: number; forwardRetries: number;
  decisions: { decision: string; rule: string; value: number }[];
  consumerLag: { topic: string; partition: string; value: number }[];
}
