// The one button for actions that need administrative access: without it the button
// stays focusable but inert (aria-disabled, not disabled), so its tooltip can still say
// how to get access.

import { Button } from "@patternfly/react-core/dist/esm/components/Button/index.js";
import { Tooltip } from "@patternfly/react-core/dist/esm/components/Tooltip/index.js";

export function AdminButton(props: {
  admin: boolean;
  label: string;
  variant: "primary" | "secondary";
  /** What the tooltip says without administrative access. */
  needsAdmin: string;
  /** What the tooltip says with it; no tooltip when absent. */
  hint?: string;
  /** Left out, the button keeps no room for a spinner (PatternFly tells undefined from false). */
  isLoading?: boolean;
  isDanger?: boolean;
  size?: "sm";
  ariaLabel?: string;
  onClick: () => void;
}) {
  const button = (
    <Button
      variant={props.variant}
      size={props.size}
      isDanger={props.isDanger}
      aria-label={props.ariaLabel}
      isAriaDisabled={!props.admin || props.isLoading === true}
      isLoading={props.isLoading}
      onClick={props.onClick}
    >
      {props.label}
    </Button>
  );
  const tip = props.admin ? props.hint : props.needsAdmin;
  return tip ? <Tooltip content={tip}>{button}</Tooltip> : button;
}
