// The globals of the console's vendored libraries (console/vendor/, loaded by index.html as
// classic scripts): as much of their API as the console uses.

/** uPlot 1.6.32 (uPlot.iife.min.js). */
declare class uPlot {
  constructor(opts: object, data: ReadonlyArray<ReadonlyArray<number | null>>, target: HTMLElement);
  readonly root: HTMLElement;
  readonly over: HTMLElement;
  readonly width: number;
  readonly height: number;
  readonly cursor: { idx?: number | null };
  /** The scales' current ranges (the x scale is time, in Unix seconds). */
  readonly scales: { x: { min?: number; max?: number } };
  /** Where `value` of scale `scale` is, in CSS pixels from the plotting area's left (or top). */
  valToPos(value: number, scale: string): number;
  setData(data: ReadonlyArray<ReadonlyArray<number | null>>, resetScales?: boolean): void;
  setSize(size: { width: number; height: number }): void;
  syncRect(force?: boolean): void;
  destroy(): void;
}

/** Cytoscape.js 3.34.4 (cytoscape.min.js). */
declare function cytoscape(options: {
  container: HTMLElement;
  elements: ReadonlyArray<{ data: Record<string, unknown> }>;
  layout: object;
  style: ReadonlyArray<{ selector: string; style: Record<string, string | number> }>;
  wheelSensitivity?: number;
}): cytoscape.Core;

declare namespace cytoscape {
  interface Position { x: number; y: number }
  interface BoundingBox { x1: number; y1: number; x2: number; y2: number; w: number; h: number }
  interface BoundingBoxOptions {
    includeNodes?: boolean; includeEdges?: boolean; includeLabels?: boolean; includeOverlays?: boolean;
  }
  interface Element {
    id(): string;
    data(): any;
    data(key: string): any;
    data(values: Record<string, unknown>): this;
    boundingBox(options?: BoundingBoxOptions): BoundingBox;
    /** A style bypass on this element. */
    style(property: string, value: string | number): this;
    /** The value of a style property. */
    style(property: string): string;
    /** Removes bypasses (space-separated property names). */
    removeStyle(properties: string): this;
  }
  interface NodeSingular extends Element {
    position(): Position;
  }
  interface EdgeSingular extends Element {}
  interface EventObject {
    target: Element;
  }
  interface Core {
    container(): HTMLElement | null;
    nodes(): NodeSingular[];
    edges(): EdgeSingular[];
    getElementById(id: string): NodeSingular;
    zoom(): number;
    zoom(level: number): Core;
    pan(): Position;
    pan(position: Position): Core;
    resize(): Core;
    batch(update: () => void): void;
    on(event: string, selector: string, handler: (event: EventObject) => void): Core;
    destroy(): void;
  }
}
